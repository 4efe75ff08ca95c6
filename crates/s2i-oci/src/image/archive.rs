//! Image archives in and out of the store: `docker-archive` (what `docker save` writes: the legacy
//! `manifest.json` form with `<id>/layer.tar`, and the OCI-layout form of Docker 25+),
//! `oci-archive` (an OCI layout in a tar) and `oci:` directories.
//!
//! An archive is read once, as a stream: each file goes to a temp file of the store, hashed as it
//! is written; when the stream ends, the files that its manifests name move into the blobs (by
//! rename, digests checked) and the rest is dropped. Exports write a tar that is both an OCI
//! layout and, with `manifest.json`, a `docker load`/`podman load` archive.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use s2i_engine::ArchiveFormat;
use s2i_registry::ImageRef;

use s2i_registry::digest::{Digest, HashingWriter};
use super::error::{ImageError, Result};
use s2i_registry::oci::{self, Descriptor, DockerArchiveEntry, ImageIndex, ImageManifest};
use super::store::{normalize_name, read_capped, Image, Store};
use super::tar_read::{self, Kind};
use super::unpack::split_path;
use crate::fsroot::{self, Regular};

/// How many files an imported archive may hold (each is staged in a temp file).
const MAX_ARCHIVE_FILES: usize = 100_000;

/// An image given as a file instead of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    DockerArchive { path: PathBuf, reference: Option<String> },
    OciArchive { path: PathBuf, reference: Option<String> },
    OciDir { path: PathBuf, reference: Option<String> },
}

impl Transport {
    /// `docker-archive:PATH[:REF]`, `oci-archive:PATH[:REF]`, `oci:DIR[:REF]`; `None` for
    /// anything else. `:REF` is split off only when `PATH` alone does not exist.
    pub fn parse(text: &str) -> Option<Transport> {
        let (kind, rest) = [("docker-archive:", 0), ("oci-archive:", 1), ("oci:", 2)]
            .iter()
            .find_map(|(prefix, kind)| text.strip_prefix(prefix).map(|rest| (*kind, rest)))?;
        let (path, reference) = match rest.rsplit_once(':') {
            Some((p, r)) if !Path::new(rest).exists() && !p.is_empty() => (PathBuf::from(p), Some(r.to_string())),
            _ => (PathBuf::from(rest), None),
        };
        Some(match kind {
            0 => Transport::DockerArchive { path, reference },
            1 => Transport::OciArchive { path, reference },
            _ => Transport::OciDir { path, reference },
        })
    }

    fn path(&self) -> &Path {
        match self {
            Transport::DockerArchive { path, .. } | Transport::OciArchive { path, .. } | Transport::OciDir { path, .. } => path,
        }
    }

    fn reference(&self) -> Option<&str> {
        match self {
            Transport::DockerArchive { reference, .. }
            | Transport::OciArchive { reference, .. }
            | Transport::OciDir { reference, .. } => reference.as_deref(),
        }
    }
}

/// One imported image and the name its archive gave it, as written there.
struct Imported {
    image: Image,
    raw_names: Vec<String>,
}

/// A file of an archive, staged in the store's temp dir.
struct StagedFile {
    tmp: Option<tempfile::TempPath>,
    digest: Digest,
    size: u64,
}

/// Where an import reads from: an archive's staged files, or an `oci:` directory.
enum Source<'a> {
    Staged { name: String, files: HashMap<String, StagedFile>, links: HashMap<String, String> },
    Dir { path: &'a Path },
}

impl Source<'_> {
    fn name(&self) -> String {
        match self {
            Source::Staged { name, .. } => name.clone(),
            Source::Dir { path } => path.display().to_string(),
        }
    }

    fn err(&self, reason: impl Into<String>) -> ImageError {
        ImageError::archive(self.name(), reason)
    }

    /// The staged path a path of the archive names, its symlinks (`docker save` links repeated
    /// layers) followed within the archive.
    fn resolve(&self, path: &str) -> Result<String> {
        let Source::Staged { links, .. } = self else { return Ok(path.to_string()) };
        let mut cur = normalize(path).ok_or_else(|| self.err(format!("invalid path {path:?}")))?;
        for _ in 0..16 {
            let Some(target) = links.get(&cur) else { return Ok(cur) };
            let base = cur.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let joined = if target.starts_with('/') { target.clone() } else { format!("{base}/{target}") };
            cur = normalize(&joined).ok_or_else(|| self.err(format!("the link {path:?} leaves the archive")))?;
        }
        Err(self.err(format!("too many links at {path:?}")))
    }

    /// The staged file at `path`, or the blob it became (or already was) in the store.
    fn staged_path(&self, store: &Store, path: &str) -> Result<Option<PathBuf>> {
        let key = self.resolve(path)?;
        let Source::Staged { files, .. } = self else { return Ok(None) };
        Ok(files.get(&key).map(|f| match &f.tmp {
            Some(tmp) => tmp.to_path_buf(),
            None => store.blob_path(&f.digest),
        }))
    }

    fn read_json(&self, store: &Store, path: &str) -> Result<Option<Vec<u8>>> {
        let limits = store.limits();
        let file = match self {
            Source::Staged { .. } => {
                let Some(staged) = self.staged_path(store, path)? else { return Ok(None) };
                File::open(&staged).map_err(|e| ImageError::io("reading", staged, e))?
            }
            Source::Dir { path: dir } => match open_regular(&dir.join(path)) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(ImageError::io("opening", dir.join(path), e)),
            },
        };
        let bytes = read_capped(file, limits.max_json_bytes)
            .map_err(|source| ImageError::Stream { what: format!("{}: {path}", self.name()), source })?
            .ok_or_else(|| limits.json_error(format!("{}: {path}", self.name())))?;
        Ok(Some(bytes))
    }

    /// Moves (or copies) the file at `path` into the store's blobs; `expected` is checked.
    fn store_blob(&mut self, store: &Store, path: &str, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let name = self.name();
        match self {
            Source::Staged { .. } => {
                let key = self.resolve(path)?;
                let Source::Staged { files, .. } = self else { unreachable!() };
                let f = files.get_mut(&key).ok_or_else(|| ImageError::archive(&name, format!("{path} is missing")))?;
                if let Some(exp) = expected {
                    if exp != &f.digest {
                        return Err(ImageError::DigestMismatch { what: format!("{name}: {path}"), expected: exp.to_string(), actual: f.digest.to_string() });
                    }
                }
                if let Some(tmp) = f.tmp.take() {
                    if !store.has_blob(&f.digest) {
                        let dest = store.blob_path(&f.digest);
                        tmp.persist(&dest).map_err(|e| ImageError::io("storing the blob", dest, e.error))?;
                    }
                }
                Ok((f.digest.clone(), f.size))
            }
            Source::Dir { path: dir } => {
                if let Some(exp) = expected.filter(|d| store.has_blob(d)) {
                    let size = std::fs::metadata(store.blob_path(exp)).map(|m| m.len()).unwrap_or(0);
                    return Ok((exp.clone(), size));
                }
                let full = dir.join(path);
                let mut file = open_regular(&full).map_err(|e| ImageError::io("opening", &full, e))?;
                store.put_blob(&mut file, expected, &format!("{name}: {path}"))
            }
        }
    }

    /// The first bytes of a file (to tell a gzip layer from a plain one).
    fn magic(&self, store: &Store, path: &str) -> Result<Vec<u8>> {
        let staged = self.staged_path(store, path)?.ok_or_else(|| self.err(format!("{path} is missing")))?;
        let mut buf = Vec::with_capacity(8);
        File::open(&staged).and_then(|f| f.take(8).read_to_end(&mut buf)).map_err(|e| ImageError::io("reading", staged, e))?;
        Ok(buf)
    }
}

/// A regular file, never through a final symlink; a FIFO or a device there is not opened.
fn open_regular(path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    match fsroot::open_regular(fd)? {
        Regular::File(file, _) => Ok(file),
        Regular::Not(kind) => Err(io::Error::other(format!("{} is not a regular file", fsroot::kind_name(kind)))),
    }
}

/// `a/./b//c` → `a/b/c`; `None` when `..` climbs out.
fn normalize(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

/// The platform we pick from a multi-platform index.
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `docker.io/library/busybox:latest` → `busybox:latest`, as `docker save` writes names.
fn without_docker_hub_prefix(name: &str) -> String {
    let short = name.strip_prefix("docker.io/").unwrap_or(name);
    short.strip_prefix("library/").filter(|s| !s.contains('/')).unwrap_or(short).to_string()
}

impl Store {
    /// Imports every image of a `docker save` archive or an OCI archive, streamed; returns them.
    pub fn import_archive(&self, input: &mut dyn Read) -> Result<Vec<Image>> {
        Ok(self.import_stream(input, "the image archive")?.into_iter().map(|i| i.image).collect())
    }

    pub(crate) fn import_transport(&self, t: &Transport) -> Result<Image> {
        let imported = match t {
            Transport::OciDir { path, .. } => {
                if !path.join("index.json").is_file() {
                    return Err(ImageError::archive(path.display(), "not an OCI image layout (no index.json)"));
                }
                let _lease = self.lease()?;
                let mut src = Source::Dir { path };
                self.import_oci_layout(&mut src, None)?
            }
            Transport::DockerArchive { path, .. } | Transport::OciArchive { path, .. } => {
                let mut file = File::open(path).map_err(|e| ImageError::io("opening the image archive", path, e))?;
                self.import_stream(&mut io::BufReader::with_capacity(256 << 10, &mut file), &path.display().to_string())?
            }
        };
        let wanted = t.reference();
        let mut matching: Vec<Imported> = match wanted {
            None => imported,
            Some(r) => {
                let norm = normalize_name(r).ok();
                imported
                    .into_iter()
                    .filter(|i| i.raw_names.iter().any(|n| n == r) || norm.as_ref().is_some_and(|n| i.image.names.contains(n)))
                    .collect()
            }
        };
        match matching.len() {
            1 => Ok(matching.pop().unwrap().image),
            0 => Err(ImageError::NotFound(match wanted {
                Some(r) => format!("{r} in {}", t.path().display()),
                None => format!("any image in {}", t.path().display()),
            })),
            n => Err(ImageError::archive(
                t.path().display(),
                format!("it holds {n} images; name one as {}:NAME", t.path().display()),
            )),
        }
    }

    fn import_stream(&self, input: &mut dyn Read, name: &str) -> Result<Vec<Imported>> {
        let _lease = self.lease()?;
        let input = self.cancel.reader(input);
        let mut files: HashMap<String, StagedFile> = HashMap::new();
        let mut links: HashMap<String, String> = HashMap::new();
        tar_read::for_each_entry(input, name, |h, data| {
            let comps = split_path(&h.path).map_err(|r| ImageError::archive(name, format!("entry {:?}: {r}", h.display_path())))?;
            let key = comps.iter().map(|c| String::from_utf8_lossy(c)).collect::<Vec<_>>().join("/");
            match h.kind {
                Kind::File => {
                    if files.len() >= MAX_ARCHIVE_FILES {
                        return Err(ImageError::archive(name, format!("more than {MAX_ARCHIVE_FILES} files: not an image archive")));
                    }
                    // A blob we already hold needs no second copy.
                    if let Some(d) = key.strip_prefix("blobs/sha256/").and_then(|hex| Digest::parse(&format!("sha256:{hex}"))) {
                        if self.has_blob(&d) {
                            files.insert(key, StagedFile { tmp: None, digest: d, size: h.size });
                            return Ok(());
                        }
                    }
                    let tmp = self.temp_file()?;
                    let limit = self.limits().max_blob_bytes;
                    let mut w = HashingWriter::new(io::BufWriter::new(tmp));
                    let n = io::copy(&mut data.take(limit + 1), &mut w)
                        .map_err(|source| ImageError::Stream { what: format!("{name}: {key}"), source })?;
                    if n > limit {
                        return Err(self.limits().blob_error(format!("{name}: {key}")));
                    }
                    let (digest, size, buf) = w.finish();
                    let tmp = buf.into_inner().map_err(|e| ImageError::Stream { what: format!("{name}: {key}"), source: e.into_error() })?;
                    files.insert(key, StagedFile { tmp: Some(tmp.into_temp_path()), digest, size });
                }
                Kind::Symlink => {
                    links.insert(key, String::from_utf8_lossy(h.link.as_deref().unwrap_or_default()).into_owned());
                }
                _ => {}
            }
            Ok(())
        })?;
        let mut src = Source::Staged { name: name.to_string(), files, links };
        let docker_manifest = src.read_json(self, "manifest.json")?;
        match docker_manifest {
            Some(bytes) => {
                let entries: Vec<DockerArchiveEntry> =
                    serde_json::from_slice(&bytes).map_err(|e| src.err(format!("manifest.json: {e}")))?;
                self.import_docker_entries(&mut src, &entries)
            }
            None => {
                if src.read_json(self, "index.json")?.is_none() {
                    return Err(src.err("neither a docker archive (no manifest.json) nor an OCI archive (no index.json)"));
                }
                self.import_oci_layout(&mut src, None)
            }
        }
    }

    /// The images of `docker save`'s `manifest.json`, in either layout.
    fn import_docker_entries(&self, src: &mut Source<'_>, entries: &[DockerArchiveEntry]) -> Result<Vec<Imported>> {
        let mut out = Vec::new();
        for entry in entries {
            let config_bytes = src.read_json(self, &entry.config)?.ok_or_else(|| src.err(format!("{} is missing", entry.config)))?;
            let config_json: serde_json::Value =
                serde_json::from_slice(&config_bytes).map_err(|e| src.err(format!("{}: {e}", entry.config)))?;
            let diff_ids = oci::diff_ids(&config_json).map_err(|r| src.err(format!("{}: {r}", entry.config)))?;
            if diff_ids.len() != entry.layers.len() {
                return Err(src.err(format!("{}: {} diff ids for {} layers", entry.config, diff_ids.len(), entry.layers.len())));
            }
            let mut layers = Vec::new();
            for path in &entry.layers {
                let media = oci::sniff_layer_media_type(&src.magic(self, path)?).map_err(ImageError::Unsupported)?;
                let (digest, size) = src.store_blob(self, path, None)?;
                layers.push(Descriptor::new(media, digest, size));
            }
            let (config_digest, config_size) = src.store_blob(self, &entry.config, None)?;
            let manifest = ImageManifest::new(Descriptor::new(oci::OCI_CONFIG, config_digest, config_size), layers);
            let (digest, size) = self.put_json_blob(&manifest)?;
            let raw_names = entry.repo_tags.clone().unwrap_or_default();
            let names = raw_names.iter().map(|n| normalize_name(n)).collect::<Result<Vec<_>>>()?;
            let desc = Descriptor::new(oci::OCI_MANIFEST, digest.clone(), size);
            self.add_manifest(&desc, &names)?;
            let index = self.read_index()?;
            out.push(Imported { image: self.load_image(&digest, &index)?, raw_names });
        }
        Ok(out)
    }

    /// The images of an OCI layout's `index.json` (or the nested index `at`).
    fn import_oci_layout(&self, src: &mut Source<'_>, at: Option<&Descriptor>) -> Result<Vec<Imported>> {
        let index: ImageIndex = match at {
            None => {
                let bytes = src.read_json(self, "index.json")?.ok_or_else(|| src.err("index.json is missing"))?;
                serde_json::from_slice(&bytes).map_err(|e| src.err(format!("index.json: {e}")))?
            }
            Some(d) => self.read_source_json(src, d)?.0,
        };
        let mut out = Vec::new();
        let mut done = HashSet::new();
        for desc in &index.manifests {
            if desc.is_index() {
                // A multi-platform image: ours only.
                let nested: ImageIndex = self.read_source_json(src, desc)?.0;
                let pick = nested.manifests.iter().find(|m| {
                    m.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == host_arch())
                });
                let Some(pick) = pick else {
                    return Err(ImageError::Unsupported(format!("use {}: it has no linux/{} image", src.name(), host_arch())));
                };
                let mut pick = pick.clone();
                pick.annotations.extend(desc.annotations.clone());
                out.push(self.import_oci_manifest(src, &pick)?);
                continue;
            }
            if !done.insert((desc.digest.clone(), desc.ref_name().map(str::to_string))) {
                continue;
            }
            out.push(self.import_oci_manifest(src, desc)?);
        }
        Ok(out)
    }

    fn read_source_json<T: serde::de::DeserializeOwned>(&self, src: &mut Source<'_>, d: &Descriptor) -> Result<(T, u64)> {
        let path = format!("blobs/sha256/{}", d.digest.hex());
        let (digest, _) = src.store_blob(self, &path, Some(&d.digest))?;
        self.read_json_blob(&digest, "manifest")
    }

    fn import_oci_manifest(&self, src: &mut Source<'_>, desc: &Descriptor) -> Result<Imported> {
        let (manifest, size): (ImageManifest, u64) = self.read_source_json(src, desc)?;
        for layer in &manifest.layers {
            oci::layer_compression(&layer.media_type).map_err(ImageError::Unsupported)?;
            src.store_blob(self, &format!("blobs/sha256/{}", layer.digest.hex()), Some(&layer.digest))?;
        }
        src.store_blob(self, &format!("blobs/sha256/{}", manifest.config.digest.hex()), Some(&manifest.config.digest))?;
        // The name: containerd's full one, else a ref name that is an image reference.
        let raw = desc.annotations.get(oci::ANNOTATION_CONTAINERD_NAME).map(String::as_str).or(desc.ref_name());
        let raw_names: Vec<String> = desc.ref_name().into_iter().chain(raw).map(str::to_string).collect();
        let names: Vec<String> = raw
            .filter(|r| r.contains([':', '/']) && ImageRef::parse(r).is_ok())
            .and_then(|r| normalize_name(r).ok())
            .into_iter()
            .collect();
        let stored = Descriptor::new(&desc.media_type, desc.digest.clone(), size);
        self.add_manifest(&stored, &names)?;
        let index = self.read_index()?;
        Ok(Imported { image: self.load_image(&desc.digest, &index)?, raw_names })
    }

    /// Writes `image` as an archive: an OCI layout in a tar, plus `manifest.json` for
    /// `DockerArchive` (the form Docker 25+ writes, which `docker load` of 20.10 and `podman load`
    /// read). Entries are in a fixed order with fixed times: the same image gives the same bytes.
    pub fn export(&self, image: &Image, format: ArchiveFormat, out: &mut dyn Write) -> Result<()> {
        let _lease = self.lease()?;
        let manifest_digest = Digest::parse(&image.manifest_digest).expect("a stored digest");
        let mut tar = tar::Builder::new(out);
        let io_err = |source: io::Error| ImageError::Stream { what: "writing the image archive".into(), source };

        let layout = serde_json::to_vec(&serde_json::json!({ "imageLayoutVersion": oci::OCI_LAYOUT_VERSION })).unwrap();
        append_bytes(&mut tar, "oci-layout", &layout).map_err(io_err)?;
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut h = s2i_tar::header::header(tar::Header::new_ustar(), tar::EntryType::Directory, 0o755, 0, 0, 0, 0);
            tar.append_data(&mut h, dir, io::empty()).map_err(io_err)?;
        }
        let mut blobs: Vec<(&Digest, u64)> = vec![(&image.manifest.config.digest, image.manifest.config.size)];
        blobs.extend(image.manifest.layers.iter().map(|l| (&l.digest, l.size)));
        blobs.push((&manifest_digest, image.manifest_size));
        let mut written = HashSet::new();
        for (digest, size) in blobs {
            if !written.insert(digest.clone()) {
                continue;
            }
            let file = self.open_blob(digest)?;
            let actual = file.metadata().map_err(|e| ImageError::io("reading", self.blob_path(digest), e))?.len();
            if actual != size {
                return Err(ImageError::archive(self.root().display(), format!("blob {digest} has {actual} bytes, its descriptor says {size}")));
            }
            let mut h = file_header(size);
            let data = io::BufReader::with_capacity(256 << 10, self.cancel.reader(file));
            tar.append_data(&mut h, format!("blobs/sha256/{}", digest.hex()), data)
                .map_err(io_err)?;
        }
        let mut desc = Descriptor::new(
            image.manifest.media_type.as_deref().unwrap_or(oci::OCI_MANIFEST),
            manifest_digest.clone(),
            image.manifest_size,
        );
        if let Some(name) = image.names.first() {
            desc.annotations.insert(oci::ANNOTATION_REF_NAME.into(), name.clone());
            desc.annotations.insert(oci::ANNOTATION_CONTAINERD_NAME.into(), name.clone());
        }
        append_bytes(&mut tar, "index.json", &serde_json::to_vec(&ImageIndex::new(vec![desc])).unwrap()).map_err(io_err)?;
        if format == ArchiveFormat::DockerArchive {
            let entry = DockerArchiveEntry {
                config: format!("blobs/sha256/{}", image.manifest.config.digest.hex()),
                repo_tags: (!image.names.is_empty()).then(|| image.names.iter().map(|n| without_docker_hub_prefix(n)).collect()),
                layers: image.manifest.layers.iter().map(|l| format!("blobs/sha256/{}", l.digest.hex())).collect(),
            };
            append_bytes(&mut tar, "manifest.json", &serde_json::to_vec(&[entry]).unwrap()).map_err(io_err)?;
        }
        tar.into_inner().and_then(|w| w.flush()).map_err(io_err)?;
        Ok(())
    }
}

fn file_header(size: u64) -> tar::Header {
    s2i_tar::header::header(tar::Header::new_ustar(), tar::EntryType::Regular, 0o644, 0, 0, 0, size)
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) -> io::Result<()> {
    let mut h = file_header(data.len() as u64);
    tar.append_data(&mut h, path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_parse() {
        assert_eq!(
            Transport::parse("docker-archive:/nonexistent/a.tar"),
            Some(Transport::DockerArchive { path: "/nonexistent/a.tar".into(), reference: None })
        );
        assert_eq!(
            Transport::parse("oci:/nonexistent/dir:app:v1"),
            Some(Transport::OciDir { path: "/nonexistent/dir:app".into(), reference: Some("v1".into()) })
        );
        assert_eq!(
            Transport::parse("oci-archive:/nonexistent/x.tar:latest"),
            Some(Transport::OciArchive { path: "/nonexistent/x.tar".into(), reference: Some("latest".into()) })
        );
        assert_eq!(Transport::parse("busybox:latest"), None);
        assert_eq!(Transport::parse("docker.io/library/busybox"), None);
    }

    #[test]
    fn archive_paths_normalise_inside_the_archive() {
        assert_eq!(normalize("./a//b/./c").as_deref(), Some("a/b/c"));
        assert_eq!(normalize("a/../b").as_deref(), Some("b"));
        assert_eq!(normalize("../x"), None);
        assert_eq!(without_docker_hub_prefix("docker.io/library/busybox:latest"), "busybox:latest");
        assert_eq!(without_docker_hub_prefix("docker.io/org/app:1"), "org/app:1");
        assert_eq!(without_docker_hub_prefix("127.0.0.1:5000/app:1"), "127.0.0.1:5000/app:1");
    }
}
