//! What an image is, for explaining a difference: its configuration, the files its top layer
//! holds (what the build added), and its s2i scripts. The configuration and the layer come from
//! the engine's archive of the image (`save_image`), read as a stream through the bounded tar
//! reader: nothing of it is written to disk, and only listings (paths, kinds, sizes, modes,
//! owners, content hashes) are kept.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};

use s2i_engine::{ArchiveFormat, Engine};
use s2i_tar::{EntryKind, TarReader};
use serde::Serialize;
use serde_json::Value;

use crate::container;
use crate::error::{BuildError, Result};
use crate::limits::{Limit, Limits};

/// The kind of an entry of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    HardLink,
    /// `.wh.NAME`: the layer deletes NAME.
    Whiteout,
    /// `.wh..wh..opq`: the layer hides what lower layers had in this directory.
    Opaque,
    /// A device or a fifo.
    Other,
}

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// Relative to the image's root, without a leading `./` or `/` or a trailing `/`.
    pub path: String,
    pub kind: FileKind,
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// A link's target.
    pub target: Option<String>,
    /// A regular file's content hash.
    pub sha256: Option<String>,
}

/// An image's configuration, as its archive records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub user: String,
    pub env: Vec<String>,
    pub exposed_ports: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: String,
    pub labels: BTreeMap<String, String>,
    pub created: Option<String>,
}

impl ImageConfig {
    fn from_json(v: &Value) -> ImageConfig {
        let c = &v["config"];
        let strings = |v: &Value| -> Option<Vec<String>> { v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()) };
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let mut exposed_ports: Vec<String> = c["ExposedPorts"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        exposed_ports.sort();
        ImageConfig {
            user: text(&c["User"]),
            env: strings(&c["Env"]).unwrap_or_default(),
            exposed_ports,
            entrypoint: strings(&c["Entrypoint"]).filter(|e| !e.is_empty()),
            cmd: strings(&c["Cmd"]),
            working_dir: text(&c["WorkingDir"]),
            labels: c["Labels"].as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect()).unwrap_or_default(),
            created: v["created"].as_str().map(str::to_string),
        }
    }

    /// `NAME` → value of the environment.
    pub fn env_map(&self) -> BTreeMap<String, String> {
        self.env.iter().map(|kv| kv.split_once('=').map_or((kv.clone(), String::new()), |(k, v)| (k.to_string(), v.to_string()))).collect()
    }
}

/// An image, as far as a verify report explains it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFacts {
    /// The name it was examined by.
    pub name: String,
    /// The engine's id of it.
    pub id: String,
    pub config: ImageConfig,
    /// How many layers it has.
    pub layers: usize,
    /// The entries of its top layer, by path.
    pub top_layer: Vec<FileEntry>,
    /// Its s2i scripts, by path: the content, `(missing)` or `(unreadable: why)`.
    pub scripts: Vec<(String, String)>,
}

/// The scripts a builder's label points at, which the result image carries.
const SCRIPT_NAMES: [&str; 4] = ["assemble", "run", "save-artifacts", "assemble-runtime"];

/// Examine `image`: inspect it, read its archive, and read its scripts from a container that is
/// created and never started.
pub async fn examine(engine: &dyn Engine, image: &str, limits: &Limits) -> Result<ImageFacts> {
    let info = engine.inspect_image(image).await?.ok_or_else(|| BuildError::Engine(s2i_engine::EngineError::ImageNotFound(image.to_string())))?;
    let archive = read_archive_of(engine, image, limits).await?;
    let config = ImageConfig::from_json(&archive.config);
    let mut paths: Vec<String> = Vec::new();
    if let Some(dir) = config.labels.get("io.openshift.s2i.scripts-url").and_then(|u| u.strip_prefix("image://")) {
        paths.extend(SCRIPT_NAMES.iter().map(|n| format!("{}/{n}", dir.trim_end_matches('/'))));
    }
    // The image's command, when it is a script of its own (the run script, with --scripts-url
    // or a source's .s2i/bin too).
    if let Some(first) = config.entrypoint.as_ref().or(config.cmd.as_ref()).and_then(|c| c.first()).filter(|c| c.starts_with('/')) {
        if !paths.contains(first) {
            paths.push(first.clone());
        }
    }
    let mut scripts = Vec::new();
    if !paths.is_empty() {
        let read = container::read_image_files(engine, image, &paths, limits.script_size).await?;
        for (path, content) in paths.into_iter().zip(read) {
            let content = match content {
                Ok(Some(data)) => String::from_utf8_lossy(&data).into_owned(),
                Ok(None) => "(missing)".into(),
                Err(e) => format!("(unreadable: {})", s2i_engine::error_chain(&e)),
            };
            scripts.push((path, content));
        }
    }
    Ok(ImageFacts { name: image.to_string(), id: info.id, config, layers: archive.layers, top_layer: archive.top_layer, scripts })
}

/// The engine's docker-archive of `image`, read as it is written.
async fn read_archive_of(engine: &dyn Engine, image: &str, limits: &Limits) -> Result<ArchiveFacts> {
    let (writer, reader) = tokio::io::duplex(256 * 1024);
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    let limits_copy = *limits;
    let reading = tokio::task::spawn_blocking(move || read_archive(bridge, &limits_copy));
    let saved = engine.save_image(image, ArchiveFormat::DockerArchive, Box::new(writer)).await;
    let read = reading.await.map_err(|e| BuildError::io(format!("reading the archive of {image}"), io::Error::other(e.to_string())))?;
    let unreadable = |reason: String| BuildError::io(format!("reading the archive of {image}"), io::Error::other(reason));
    match (read, saved) {
        (Ok(facts), Ok(())) => Ok(facts),
        (Err(ArchiveError::Limit(e)), _) => Err(e),
        // An engine that failed leaves the reader a cut archive: the engine's reason is the one
        // to tell, unless it only failed writing to a reader that had given up.
        (_, Err(e)) if !matches!(e, s2i_engine::EngineError::Input(_)) => Err(e.into()),
        (Err(ArchiveError::Other(reason)), _) => Err(unreadable(reason)),
        (Ok(_), Err(e)) => Err(e.into()),
    }
}

/// What an image archive says of its image.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveFacts {
    pub config: Value,
    pub layers: usize,
    pub top_layer: Vec<FileEntry>,
}

#[derive(Debug)]
pub enum ArchiveError {
    Limit(BuildError),
    Other(String),
}

impl From<String> for ArchiveError {
    fn from(s: String) -> Self {
        ArchiveError::Other(s)
    }
}

/// What one entry of the archive turned out to be.
enum Item {
    Json(Vec<u8>),
    Layer(std::result::Result<Vec<FileEntry>, String>),
    Link(String),
    Other,
}

/// Read a docker-archive (`manifest.json` naming the config and the layers; either the legacy
/// `<id>/layer.tar` layout or an OCI layout with gzip layers). Every layer is listed as it goes
/// by, since `manifest.json` may come last; only the top one is kept.
pub fn read_archive(input: impl Read, limits: &Limits) -> std::result::Result<ArchiveFacts, ArchiveError> {
    let mut tar = TarReader::with_limits(input, limits.tar());
    let mut items: HashMap<String, Item> = HashMap::new();
    let mut entries_seen = 0u64;
    while let Some(mut entry) = tar.next_entry().map_err(|e| e.to_string())? {
        let header = entry.header().clone();
        let path = clean_path(&header.display_path());
        let item = match header.kind {
            EntryKind::Symlink | EntryKind::HardLink => {
                let target = header.link_target().map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
                let resolved = if header.kind == EntryKind::Symlink { resolve_relative(&path, &target) } else { clean_path(&target) };
                Item::Link(resolved)
            }
            EntryKind::File => {
                let mut head = Vec::with_capacity(512);
                (&mut entry).take(512).read_to_end(&mut head).map_err(|e| e.to_string())?;
                if head.first().is_some_and(|b| *b == b'{' || *b == b'[') {
                    if header.meta.size > limits.file_size {
                        Item::Other
                    } else {
                        let mut data = head;
                        entry.read_to_end(&mut data).map_err(|e| e.to_string())?;
                        Item::Json(data)
                    }
                } else if head.starts_with(&[0x1f, 0x8b]) {
                    let gz = flate2::read::MultiGzDecoder::new(io::Cursor::new(head).chain(&mut entry));
                    Item::Layer(list_layer(gz, limits, &mut entries_seen)?)
                } else if header.meta.size >= 1024 && header.meta.size % 512 == 0 {
                    Item::Layer(list_layer(io::Cursor::new(head).chain(&mut entry), limits, &mut entries_seen)?)
                } else {
                    Item::Other
                }
            }
            _ => Item::Other,
        };
        items.insert(path, item);
    }
    tar.drain().map_err(|e| e.to_string())?;

    let manifest = match items.get("manifest.json") {
        Some(Item::Json(data)) => serde_json::from_slice::<Value>(data).map_err(|e| format!("manifest.json: {e}"))?,
        _ => return Err("it has no manifest.json: not a docker-archive".to_string().into()),
    };
    let image = &manifest[0];
    let config_path = clean_path(image["Config"].as_str().ok_or_else(|| "manifest.json names no Config".to_string())?);
    let layers: Vec<String> = image["Layers"].as_array().map(|a| a.iter().filter_map(|l| l.as_str().map(clean_path)).collect()).unwrap_or_default();
    let config = match follow(&items, &config_path) {
        Some(Item::Json(data)) => serde_json::from_slice(data).map_err(|e| format!("the image config {config_path}: {e}"))?,
        _ => return Err(format!("the image config {config_path} named by manifest.json is not in the archive").into()),
    };
    let top_layer = match layers.last() {
        None => Vec::new(),
        Some(top) => match follow(&items, top) {
            Some(Item::Layer(Ok(listing))) => listing.clone(),
            Some(Item::Layer(Err(why))) => return Err(format!("its top layer {top} cannot be read: {why}").into()),
            _ => return Err(format!("its top layer {top} named by manifest.json is not in the archive").into()),
        },
    };
    Ok(ArchiveFacts { config, layers: layers.len(), top_layer })
}

/// The item at `path`, through links.
fn follow<'a>(items: &'a HashMap<String, Item>, path: &str) -> Option<&'a Item> {
    let mut path = path.to_string();
    for _ in 0..8 {
        match items.get(&path)? {
            Item::Link(target) => path = target.clone(),
            item => return Some(item),
        }
    }
    None
}

/// List a layer's entries, hashing each file's content. A layer that is not a tar is an error
/// of that layer (it matters only if it is the top one); a limit is an error of the whole read.
fn list_layer(input: impl Read, limits: &Limits, seen: &mut u64) -> std::result::Result<std::result::Result<Vec<FileEntry>, String>, ArchiveError> {
    let mut tar = TarReader::with_limits(input, limits.tar());
    let mut listing = Vec::new();
    loop {
        let mut entry = match tar.next_entry() {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(s2i_tar::TarError::Limit(e)) => return Err(ArchiveError::Limit(BuildError::InvalidValue { what: "image layer", value: String::new(), reason: limits.tar_limit_message(&e) })),
            Err(e) => return Ok(Err(e.to_string())),
        };
        *seen += 1;
        if *seen > limits.tar_paths {
            return Err(ArchiveError::Limit(limits.exceeded(Limit::TarPaths, "the entries of the image's layers")));
        }
        let h = entry.header().clone();
        let raw = clean_path(&h.display_path());
        let (dir, name) = raw.rsplit_once('/').map_or(("", raw.as_str()), |(d, n)| (d, n));
        let join = |n: &str| if dir.is_empty() { n.to_string() } else { format!("{dir}/{n}") };
        let (path, kind) = match name.strip_prefix(".wh.") {
            Some(".wh..opq") => (dir.to_string(), FileKind::Opaque),
            Some(gone) => (join(gone), FileKind::Whiteout),
            None => (
                raw.clone(),
                match h.kind {
                    EntryKind::File => FileKind::File,
                    EntryKind::Dir => FileKind::Dir,
                    EntryKind::Symlink => FileKind::Symlink,
                    EntryKind::HardLink => FileKind::HardLink,
                    _ => FileKind::Other,
                },
            ),
        };
        let sha256 = if kind == FileKind::File {
            use sha2::Digest;
            let mut hasher = sha2::Sha256::new();
            if let Err(e) = io::copy(&mut entry, &mut HashWriter(&mut hasher)) {
                return Ok(Err(e.to_string()));
            }
            Some(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
        } else {
            None
        };
        let target = h.link_target().map(|t| t.to_string_lossy().into_owned());
        listing.push(FileEntry { path, kind, size: h.meta.size, mode: h.meta.mode, uid: h.meta.uid, gid: h.meta.gid, mtime: h.meta.mtime, target, sha256 });
    }
    listing.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Ok(listing))
}

struct HashWriter<'a>(&'a mut sha2::Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sha2::Digest::update(self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `./a/b/` → `a/b`; `/a` → `a`.
fn clean_path(p: &str) -> String {
    let p = p.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/');
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

/// A symlink's target inside the archive, relative to the link's directory.
fn resolve_relative(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') { Vec::new() } else { link.split('/').collect() };
    if !target.starts_with('/') {
        parts.pop();
    }
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A layer tar of (path, content, mode) files and `dir/` directories.
    pub(crate) fn layer(files: &[(&str, &str, u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data, mode) in files {
            let mut h = tar::Header::new_gnu();
            h.set_mode(*mode);
            h.set_mtime(1_700_000_000);
            h.set_uid(1001);
            if let Some(dir) = path.strip_suffix('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, format!("{dir}/"), io::empty()).unwrap();
            } else if let Some(target) = data.strip_prefix("-> ") {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            } else {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    fn add(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    }

    /// A docker-archive in Docker 20.10's layout (manifest.json last, layers as `<id>/layer.tar`,
    /// a repeated layer as a symlink), or in the OCI layout with gzip layers.
    pub(crate) fn archive(layers: &[Vec<u8>], config: &Value, oci: bool) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut paths = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            if oci {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                io::Write::write_all(&mut gz, layer).unwrap();
                let path = format!("blobs/sha256/{i:064x}");
                add(&mut b, &path, &gz.finish().unwrap());
                paths.push(path);
            } else {
                let path = format!("{i:064x}/layer.tar");
                add(&mut b, &format!("{i:064x}/VERSION"), b"1.0");
                add(&mut b, &format!("{i:064x}/json"), b"{\"id\":\"x\"}");
                add(&mut b, &path, layer);
                paths.push(path);
            }
        }
        if !oci && layers.len() > 1 {
            // The top layer repeats the first one: Docker writes a link to it.
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, "ffff/layer.tar", format!("../{:064x}/layer.tar", 0)).unwrap();
        }
        let config_path = if oci { "blobs/sha256/c0".to_string() } else { "c0.json".to_string() };
        add(&mut b, &config_path, config.to_string().as_bytes());
        let mut layer_paths = paths.clone();
        if !oci && layers.len() > 1 {
            *layer_paths.last_mut().unwrap() = "ffff/layer.tar".into();
        }
        let manifest = serde_json::json!([{ "Config": config_path, "RepoTags": ["x:latest"], "Layers": layer_paths }]);
        add(&mut b, "manifest.json", manifest.to_string().as_bytes());
        b.into_inner().unwrap()
    }

    fn config() -> Value {
        serde_json::json!({
            "created": "2024-01-02T03:04:05Z",
            "config": {"User": "1001", "Env": ["PATH=/bin", "PYTHON_VERSION=3.11.2"], "ExposedPorts": {"8080/tcp": {}},
                       "Cmd": ["/usr/libexec/s2i/run"], "WorkingDir": "/opt/app-root/src", "Labels": {"a": "1"}}
        })
    }

    #[test]
    fn the_top_layer_and_config_are_read_from_either_layout() {
        let base = layer(&[("bin/", "", 0o755), ("bin/sh", "busybox", 0o755)]);
        let top = layer(&[("opt/app-root/src/", "", 0o775), ("opt/app-root/src/app.py", "print(1)\n", 0o644), ("opt/app-root/src/.wh.old.txt", "", 0o644), ("opt/x/.wh..wh..opq", "", 0o644), ("opt/app-root/src/link", "-> app.py", 0o777)]);
        for oci in [false, true] {
            let facts = read_archive(&archive(&[base.clone(), top.clone()], &config(), oci)[..], &Limits::default()).unwrap();
            assert_eq!(facts.layers, 2);
            let paths: Vec<(&str, FileKind)> = facts.top_layer.iter().map(|e| (e.path.as_str(), e.kind)).collect();
            if !oci {
                // Docker's link to the repeated first layer.
                assert_eq!(paths, [("bin", FileKind::Dir), ("bin/sh", FileKind::File)]);
                continue;
            }
            assert_eq!(
                paths,
                [
                    ("opt/app-root/src", FileKind::Dir),
                    ("opt/app-root/src/app.py", FileKind::File),
                    ("opt/app-root/src/link", FileKind::Symlink),
                    ("opt/app-root/src/old.txt", FileKind::Whiteout),
                    ("opt/x", FileKind::Opaque),
                ]
            );
            let app = &facts.top_layer[1];
            assert_eq!((app.size, app.mode, app.uid), (9, 0o644, 1001));
            assert_eq!(app.sha256.as_deref(), Some(s2i_registry::digest::hex_sha256(b"print(1)\n").as_str()));
            assert_eq!(facts.top_layer[2].target.as_deref(), Some("app.py"));
            let c = ImageConfig::from_json(&facts.config);
            assert_eq!(c.exposed_ports, ["8080/tcp"]);
            assert_eq!(c.env_map()["PYTHON_VERSION"], "3.11.2");
            assert_eq!(c.created.as_deref(), Some("2024-01-02T03:04:05Z"));
        }
        let facts = read_archive(&archive(std::slice::from_ref(&top), &config(), false)[..], &Limits::default()).unwrap();
        assert_eq!(facts.top_layer.len(), 5);
    }

    #[test]
    fn a_bad_archive_is_an_error_that_says_why_and_limits_hold() {
        let err = |data: &[u8], limits: &Limits| match read_archive(data, limits).unwrap_err() {
            ArchiveError::Other(s) => s,
            ArchiveError::Limit(e) => e.to_string(),
        };
        let mut b = tar::Builder::new(Vec::new());
        add(&mut b, "x", b"y");
        let no_manifest = b.into_inner().unwrap();
        assert!(err(&no_manifest, &Limits::default()).contains("no manifest.json"));
        let many: Vec<(String, String, u32)> = (0..20).map(|i| (format!("f{i}"), String::new(), 0o644)).collect();
        let many: Vec<(&str, &str, u32)> = many.iter().map(|(p, d, m)| (p.as_str(), d.as_str(), *m)).collect();
        let data = archive(&[layer(&many)], &config(), true);
        let limits = Limits { tar_paths: 10, ..Limits::default() };
        assert!(err(&data, &limits).contains("S2I_LIMIT_TAR_PATHS"), "{}", err(&data, &limits));
    }

    #[test]
    fn archive_paths_resolve() {
        assert_eq!(clean_path("./a/b/"), "a/b");
        assert_eq!(clean_path("/a"), "a");
        assert_eq!(resolve_relative("ffff/layer.tar", "../0000/layer.tar"), "0000/layer.tar");
        assert_eq!(resolve_relative("a/b", "/c"), "c");
    }
}
