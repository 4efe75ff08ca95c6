//! The local image store: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`)
//! that other tools read too (`skopeo inspect oci:DIR:NAME`, `umoci unpack`), plus s2i's own
//! `s2i/` directory beside it: unpacked layers by chain id, temp files, and the lock files.
//!
//! Several s2i processes may use one store at once. Blobs are content-addressed and land by
//! `rename`, so two writers of one blob agree. `index.json` is rewritten whole, under an
//! exclusive `flock` on `s2i/index.lock`. Work that writes blobs before an index update holds a
//! shared `flock` on `s2i/gc.lock` (a [`Lease`]); the sweep after a removal needs it exclusively
//! and skips when anyone holds a lease, so it never takes a blob or layer dir someone is using.
//!
//! The store root is private to its owner (0700, owned by the user s2i runs as, root for the
//! engine): the layers it unpacks keep their setuid bits and owners, and the containers' root
//! file systems are mounted inside it, so any user who could reach them could run a builder's
//! setuid-root binary on the host (the hole of Docker's CVE-2021-41091).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use tracing::{debug, warn};

use s2i_registry::ImageRef;

use s2i_registry::digest::{Digest, HashingReader, HashingWriter};
use super::error::{ImageError, Result};
use s2i_registry::oci::{self, Descriptor, ImageConfig, ImageIndex, ImageManifest, ANNOTATION_REF_NAME, OCI_LAYOUT_VERSION};
use super::unpack::{self, Unpack, Whiteouts};
use crate::cancel::Cancel;

/// Size limits for what the store reads from untrusted sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A JSON document: manifest, index, config, `manifest.json`.
    pub max_json_bytes: u64,
    /// One blob (a layer) of an imported archive.
    pub max_blob_bytes: u64,
}

/// The environment variables that change the [`Limits`], named in their errors. The store does
/// not read them: the binary does, with s2i-core's grammar of limits, and sets them.
pub const MAX_JSON_ENV: &str = "S2I_OCI_MAX_JSON_BYTES";
pub const MAX_BLOB_ENV: &str = "S2I_OCI_MAX_BLOB_BYTES";

impl Default for Limits {
    fn default() -> Self {
        Limits { max_json_bytes: 16 << 20, max_blob_bytes: 64 << 30 }
    }
}

impl Limits {
    pub(crate) fn json_error(&self, what: impl Into<String>) -> ImageError {
        ImageError::Limit { what: what.into(), limit: self.max_json_bytes, hint: format!("raise it with {MAX_JSON_ENV}=BYTES") }
    }

    pub(crate) fn blob_error(&self, what: impl Into<String>) -> ImageError {
        ImageError::Limit { what: what.into(), limit: self.max_blob_bytes, hint: format!("raise it with {MAX_BLOB_ENV}=BYTES") }
    }
}

/// `registry/path` of a `registry/path:tag` name.
fn repository_of(name: &str) -> &str {
    let name = name.split_once('@').map_or(name, |(n, _)| n);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

/// An image in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// `sha256:<config digest>`, as Docker's image id.
    pub id: String,
    pub manifest_digest: String,
    pub config: ImageConfig,
    /// The names it is tagged with, fully qualified (`docker.io/library/busybox:latest`).
    pub names: Vec<String>,
    pub(crate) manifest: ImageManifest,
    pub(crate) diff_ids: Vec<Digest>,
    /// The config blob as JSON, every field kept (a commit changes only what it sets).
    pub(crate) config_json: serde_json::Value,
    pub(crate) manifest_size: u64,
}

impl Image {
    /// What the engine reports to core.
    pub fn info(&self) -> s2i_engine::ImageInfo {
        let c = &self.config;
        s2i_engine::ImageInfo {
            id: self.id.clone(),
            user: c.user.clone(),
            env: c.env.clone(),
            entrypoint: c.entrypoint.clone(),
            cmd: c.cmd.clone(),
            working_dir: c.working_dir.clone(),
            labels: c.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            on_build: c.on_build.clone(),
            // What the registry would transfer: the layers as stored.
            size: Some(self.manifest.layers.iter().map(|l| l.size).sum()),
            // The store keeps manifests as they were pulled: the digest is the registry's.
            repo_digests: self.names.iter().map(|n| format!("{}@{}", repository_of(n), self.manifest_digest)).collect(),
        }
    }

    /// The manifest's descriptor (no annotations).
    pub(crate) fn descriptor(&self) -> Descriptor {
        let media = self.manifest.media_type.as_deref().unwrap_or(oci::OCI_MANIFEST);
        Descriptor::new(media, Digest::parse(&self.manifest_digest).expect("a stored digest"), self.manifest_size)
    }

    /// The config blob, as stored.
    pub fn config_json(&self) -> &serde_json::Value {
        &self.config_json
    }

    pub fn layer_count(&self) -> usize {
        self.manifest.layers.len()
    }

    /// Chain ids of the layer stack, bottom first.
    pub(crate) fn chain_ids(&self) -> Vec<Digest> {
        let mut out: Vec<Digest> = Vec::with_capacity(self.diff_ids.len());
        for d in &self.diff_ids {
            let next = Digest::chain(out.last(), d);
            out.push(next);
        }
        out
    }
}

/// A shared hold on the store that keeps the sweep away (see the module doc). Hold one while a
/// container uses an image's layer dirs.
pub struct Lease(#[allow(dead_code)] File);

pub struct Store {
    root: PathBuf,
    limits: Limits,
    /// Stops this handle's long work (unpacking, commits, archives, blobs written) between
    /// entries and reads; see [`Store::with_cancel`].
    pub(crate) cancel: Cancel,
}

fn io_at<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ImageError + 'a {
    move |e| ImageError::io(op, path, e)
}

/// Locks `path` (made when missing). A non-blocking `op` gives `None` when another process holds
/// the lock; a blocking one waits for it, polling, until `cancel` stops it (a lock held for the
/// whole unpack of a large layer by another process must not hold up an interruption).
fn flock(path: &Path, op: FlockOperation, cancel: &Cancel) -> Result<Option<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_at("opening the lock file", path))?;
    let (attempt, waits) = match op {
        FlockOperation::LockExclusive => (FlockOperation::NonBlockingLockExclusive, true),
        FlockOperation::LockShared => (FlockOperation::NonBlockingLockShared, true),
        other => (other, false),
    };
    loop {
        match rustix::fs::flock(&file, attempt) {
            Ok(()) => return Ok(Some(file)),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) if waits => {
                cancel.check()?;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(ImageError::io("locking", path, e.into())),
        }
    }
}

/// Reads all of `r`, at most `limit` bytes; `None` when there is more.
pub(crate) fn read_capped(r: impl Read, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    r.take(limit + 1).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= limit).then_some(buf))
}

impl Store {
    /// Opens the store at `root`, creating the layout when it is missing; the default limits
    /// apply until [`Store::set_limits`]. The root is made private first ([`make_private`]):
    /// nothing is written into a store others can reach.
    pub fn open(root: &Path) -> Result<Store> {
        make_private(root)?;
        let store = Store { root: root.to_path_buf(), limits: Limits::default(), cancel: Cancel::never() };
        for dir in [store.blobs_dir(), store.s2i_dir().join("layers"), store.tmp_dir()] {
            private_dirs(&dir)?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            let doc = serde_json::json!({ "imageLayoutVersion": OCI_LAYOUT_VERSION });
            store.write_atomic(&layout, doc.to_string().as_bytes())?;
        }
        let _lock = store.index_lock()?;
        if !store.index_path().exists() {
            store.write_index(&ImageIndex::new(Vec::new()))?;
        }
        Ok(store)
    }

    /// `$XDG_DATA_HOME/s2i/oci`, else `~/.local/share/s2i/oci`.
    pub fn default_root() -> PathBuf {
        if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
            return PathBuf::from(d).join("s2i/oci");
        }
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).unwrap_or_else(|| "/root".into());
        PathBuf::from(home).join(".local/share/s2i/oci")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The same store, for work that `cancel` stops: it fails with [`ImageError::Cancelled`]
    /// within one entry or read once cancelled, and leaves no temp file or directory.
    pub fn with_cancel(&self, cancel: Cancel) -> Store {
        Store { root: self.root.clone(), limits: self.limits, cancel }
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    fn s2i_dir(&self) -> PathBuf {
        self.root.join("s2i")
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.s2i_dir().join("tmp")
    }

    fn layer_dir(&self, chain_id: &Digest) -> PathBuf {
        self.s2i_dir().join("layers").join(chain_id.hex())
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn index_lock(&self) -> Result<File> {
        Ok(flock(&self.s2i_dir().join("index.lock"), FlockOperation::LockExclusive, &self.cancel)?.expect("blocking lock"))
    }

    /// Keeps the sweep from removing blobs and layer dirs while it is held.
    pub fn lease(&self) -> Result<Lease> {
        Ok(Lease(flock(&self.s2i_dir().join("gc.lock"), FlockOperation::LockShared, &self.cancel)?.expect("blocking lock")))
    }

    pub(crate) fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        tempfile::Builder::new().prefix("blob-").tempfile_in(self.tmp_dir()).map_err(io_at("creating a temp file in", &self.tmp_dir()))
    }

    pub(crate) fn temp_dir(&self, prefix: &str) -> Result<PathBuf> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(self.tmp_dir()).map_err(io_at("creating a temp dir in", &self.tmp_dir()))?;
        Ok(dir.keep())
    }

    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<()> {
        let mut tmp = self.temp_file()?;
        tmp.write_all(data).and_then(|_| tmp.as_file().sync_all()).map_err(io_at("writing", tmp.path()))?;
        tmp.persist(path).map_err(|e| ImageError::io("writing", path, e.error))?;
        Ok(())
    }

    // ---- blobs ----

    pub(crate) fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Streams `input` into a blob, hashing as it goes; with `expected`, a different digest is an
    /// error and nothing is stored. `what` names the stream in errors.
    pub(crate) fn put_blob(&self, input: &mut dyn Read, expected: Option<&Digest>, what: &str) -> Result<(Digest, u64)> {
        let tmp = self.temp_file()?;
        let mut w = HashingWriter::new(io::BufWriter::new(tmp));
        let limit = self.limits.max_blob_bytes;
        let copied = io::copy(&mut self.cancel.reader(input).take(limit + 1), &mut w)
            .map_err(|source| ImageError::Stream { what: what.to_string(), source })?;
        if copied > limit {
            return Err(self.limits.blob_error(what));
        }
        let (digest, size, buf) = w.finish();
        let tmp = buf.into_inner().map_err(|e| ImageError::Stream { what: what.to_string(), source: e.into_error() })?;
        if let Some(exp) = expected {
            if exp != &digest {
                return Err(ImageError::DigestMismatch { what: what.to_string(), expected: exp.to_string(), actual: digest.to_string() });
            }
        }
        self.persist_blob(tmp, &digest)?;
        Ok((digest, size))
    }

    /// Moves a temp file holding the content of `digest` into place (already verified).
    pub(crate) fn persist_blob(&self, tmp: tempfile::NamedTempFile, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        if path.is_file() {
            return Ok(()); // the same content, by its name
        }
        let _ = fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644));
        tmp.persist(&path).map_err(|e| ImageError::io("storing the blob", &path, e.error))?;
        Ok(())
    }

    pub(crate) fn put_json_blob(&self, value: &impl serde::Serialize) -> Result<(Digest, u64)> {
        let bytes = serde_json::to_vec(value).expect("our JSON serialises");
        let digest = Digest::of(&bytes);
        if !self.has_blob(&digest) {
            let mut tmp = self.temp_file()?;
            tmp.write_all(&bytes).map_err(io_at("writing", tmp.path()))?;
            self.persist_blob(tmp, &digest)?;
        }
        Ok((digest, bytes.len() as u64))
    }

    pub(crate) fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ImageError::archive(self.root.display(), format!("blob {digest} is missing from the store"))
            } else {
                ImageError::io("opening", &path, e)
            }
        })
    }

    /// A JSON blob, its digest checked, within the size limit.
    pub(crate) fn read_json_blob<T: serde::de::DeserializeOwned>(&self, digest: &Digest, what: &str) -> Result<(T, u64)> {
        let file = self.open_blob(digest)?;
        let mut r = HashingReader::new(file);
        let bytes = read_capped(&mut r, self.limits.max_json_bytes)
            .map_err(io_at("reading", &self.blob_path(digest)))?
            .ok_or_else(|| self.limits.json_error(format!("{what} {digest}")))?;
        let (actual, _) = r.finish().map_err(io_at("reading", &self.blob_path(digest)))?;
        if &actual != digest {
            return Err(ImageError::DigestMismatch { what: format!("{what} in the store"), expected: digest.to_string(), actual: actual.to_string() });
        }
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::archive(self.root.display(), format!("{what} {digest}: {e}")))?;
        Ok((value, bytes.len() as u64))
    }

    // ---- index ----

    pub(crate) fn read_index(&self) -> Result<ImageIndex> {
        let path = self.index_path();
        let file = File::open(&path).map_err(io_at("opening", &path))?;
        let bytes = read_capped(file, self.limits.max_json_bytes)
            .map_err(io_at("reading", &path))?
            .ok_or_else(|| self.limits.json_error(path.display().to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::archive(path.display(), e.to_string()))
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let bytes = serde_json::to_vec(index).expect("our JSON serialises");
        self.write_atomic(&self.index_path(), &bytes)
    }

    fn update_index<T>(&self, change: impl FnOnce(&mut ImageIndex) -> Result<T>) -> Result<T> {
        let _lock = self.index_lock()?;
        let mut index = self.read_index()?;
        let out = change(&mut index)?;
        self.write_index(&index)?;
        Ok(out)
    }

    /// Records a manifest (already in the blobs) under `names`, moving each name off whatever it
    /// named before; without names, as an untagged image (unless it is already there).
    pub(crate) fn add_manifest(&self, desc: &Descriptor, names: &[String]) -> Result<()> {
        let manifest = &desc.digest;
        let plain = || Descriptor::new(&desc.media_type, desc.digest.clone(), desc.size);
        self.update_index(|index| {
            let mut orphans = Vec::new();
            for name in names {
                index.manifests.retain(|d| {
                    let moved = d.ref_name() == Some(name.as_str()) && &d.digest != manifest;
                    if moved {
                        orphans.push(d.clone());
                    }
                    d.ref_name() != Some(name.as_str())
                });
            }
            for name in names {
                let mut d = plain();
                d.annotations.insert(ANNOTATION_REF_NAME.into(), name.clone());
                index.manifests.push(d);
            }
            if names.is_empty() {
                if !index.manifests.iter().any(|d| &d.digest == manifest) {
                    index.manifests.push(plain());
                }
            } else {
                index.manifests.retain(|d| !(&d.digest == manifest && d.ref_name().is_none()));
            }
            // An image that lost its last name stays, untagged (as Docker keeps `<none>` images).
            for mut d in orphans {
                if !index.manifests.iter().any(|m| m.digest == d.digest) {
                    d.annotations.remove(ANNOTATION_REF_NAME);
                    index.manifests.push(d);
                }
            }
            Ok(())
        })
    }

    // ---- images ----

    /// An image of the store by its manifest digest.
    pub(crate) fn load_image(&self, manifest_digest: &Digest, index: &ImageIndex) -> Result<Image> {
        let (manifest, manifest_size): (ImageManifest, u64) = self.read_json_blob(manifest_digest, "manifest")?;
        let (config_json, _): (serde_json::Value, u64) = self.read_json_blob(&manifest.config.digest, "image config")?;
        let diff_ids = oci::diff_ids(&config_json).map_err(|r| ImageError::archive(manifest.config.digest.to_string(), r))?;
        if diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::archive(
                manifest_digest.to_string(),
                format!("the manifest lists {} layers and the config {} diff ids", manifest.layers.len(), diff_ids.len()),
            ));
        }
        let names = index
            .manifests
            .iter()
            .filter(|d| &d.digest == manifest_digest)
            .filter_map(|d| d.ref_name().map(str::to_string))
            .collect();
        Ok(Image {
            id: manifest.config.digest.to_string(),
            manifest_digest: manifest_digest.to_string(),
            config: ImageConfig::from_json(&config_json),
            names,
            manifest,
            diff_ids,
            config_json,
            manifest_size,
        })
    }

    /// Looks an image up by name, id or transport; `Ok(None)` when the store has no such image.
    ///
    /// Names are normalised as Docker does (`busybox` is `docker.io/library/busybox:latest`);
    /// ids are `sha256:<hex>` or a unique hex prefix of one; `docker-archive:PATH`,
    /// `oci-archive:PATH[:REF]` and `oci:DIR[:REF]` are imported on the way.
    pub fn find_or_import(&self, reference: &str) -> Result<Option<Image>> {
        if let Some(transport) = super::archive::Transport::parse(reference) {
            return self.import_transport(&transport).map(Some);
        }
        let index = self.read_index()?;
        if let Some(id) = reference.strip_prefix("sha256:") {
            return self.find_by_id(id, &index);
        }
        let parsed = ImageRef::parse(reference).map_err(|reason| ImageError::Reference { reference: reference.into(), reason });
        match parsed {
            Ok(r) => {
                let found = match &r.digest {
                    Some(d) => index.manifests.iter().find(|m| m.digest.as_str() == d),
                    None => {
                        let name = r.normalized();
                        index.manifests.iter().find(|m| m.ref_name() == Some(name.as_str()))
                    }
                };
                if let Some(d) = found {
                    return self.load_image(&d.digest.clone(), &index).map(Some);
                }
                if reference.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return self.find_by_id(reference, &index);
                }
                Ok(None)
            }
            Err(_) if !reference.is_empty() && reference.bytes().all(|c| c.is_ascii_hexdigit()) => self.find_by_id(reference, &index),
            Err(e) => Err(e),
        }
    }

    fn find_by_id(&self, hex_prefix: &str, index: &ImageIndex) -> Result<Option<Image>> {
        if hex_prefix.is_empty() || !hex_prefix.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let prefix = hex_prefix.to_ascii_lowercase();
        let mut found: Option<Image> = None;
        let mut seen = std::collections::HashSet::new();
        for d in &index.manifests {
            if !seen.insert(d.digest.clone()) {
                continue;
            }
            let image = self.load_image(&d.digest, index)?;
            if image.id["sha256:".len()..].starts_with(&prefix) {
                if found.as_ref().is_some_and(|f| f.id != image.id) {
                    return Err(ImageError::Reference { reference: hex_prefix.into(), reason: "the id prefix names more than one image".into() });
                }
                found = Some(image);
            }
        }
        Ok(found)
    }

    /// Every image of the store.
    pub fn images(&self) -> Result<Vec<Image>> {
        let index = self.read_index()?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for d in &index.manifests {
            if seen.insert(d.digest.clone()) {
                out.push(self.load_image(&d.digest, &index)?);
            }
        }
        Ok(out)
    }

    /// Gives `image` the name `name` (normalised), taking it from any image that had it.
    pub fn tag(&self, image: &Image, name: &str) -> Result<()> {
        let normalized = normalize_name(name)?;
        self.add_manifest(&image.descriptor(), &[normalized])
    }

    /// Removes a name, or by id every name of that image; the image's blobs go when nothing else
    /// uses them.
    pub fn remove(&self, name_or_id: &str) -> Result<()> {
        let image = self.get_local(name_or_id)?.ok_or_else(|| ImageError::NotFound(name_or_id.to_string()))?;
        let by_name = ImageRef::parse(name_or_id).ok().filter(|r| r.digest.is_none()).map(|r| r.normalized());
        self.update_index(|index| {
            match by_name.as_deref().filter(|n| image.names.iter().any(|x| x == n)) {
                Some(name) => {
                    index.manifests.retain(|d| d.ref_name() != Some(name));
                }
                None => index.manifests.retain(|d| d.digest.as_str() != image.manifest_digest),
            }
            Ok(())
        })?;
        self.sweep()
    }

    /// [`Store::find_or_import`] without transports.
    fn get_local(&self, name_or_id: &str) -> Result<Option<Image>> {
        if super::archive::Transport::parse(name_or_id).is_some() {
            return Err(ImageError::Reference { reference: name_or_id.into(), reason: "name an image of the store, not an archive".into() });
        }
        self.find_or_import(name_or_id)
    }

    /// Removes blobs, unpacked layers and temp files nothing refers to, unless some process
    /// holds a [`Lease`] (then the next removal does it).
    pub fn sweep(&self) -> Result<()> {
        let Some(_gc) = flock(&self.s2i_dir().join("gc.lock"), FlockOperation::NonBlockingLockExclusive, &self.cancel)? else {
            debug!("the OCI store is in use; leaving the sweep to a later removal");
            return Ok(());
        };
        let _index = self.index_lock()?;
        let index = self.read_index()?;
        let mut blobs = std::collections::HashSet::new();
        let mut layers = std::collections::HashSet::new();
        for d in &index.manifests {
            blobs.insert(d.digest.hex().to_string());
            let image = self.load_image(&d.digest, &index)?;
            blobs.insert(image.manifest.config.digest.hex().to_string());
            blobs.extend(image.manifest.layers.iter().map(|l| l.digest.hex().to_string()));
            layers.extend(image.chain_ids().iter().map(|c| c.hex().to_string()));
        }
        let mut removed = 0;
        for (dir, keep) in [(self.blobs_dir(), &blobs), (self.s2i_dir().join("layers"), &layers)] {
            for entry in fs::read_dir(&dir).map_err(io_at("listing", &dir))? {
                let entry = entry.map_err(io_at("listing", &dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let stem = name.strip_suffix(".lock").unwrap_or(&name);
                if !keep.contains(stem) {
                    unpack::remove_tree(&entry.path()).map_err(io_at("removing", &entry.path()))?;
                    removed += 1;
                }
            }
        }
        let tmp = self.tmp_dir();
        for entry in fs::read_dir(&tmp).map_err(io_at("listing", &tmp))? {
            let entry = entry.map_err(io_at("listing", &tmp))?;
            unpack::remove_tree(&entry.path()).map_err(io_at("removing", &entry.path()))?;
        }
        debug!("swept {removed} unused blobs and layers from {}", self.root.display());
        Ok(())
    }

    // ---- root filesystems ----

    /// The overlay lower dirs of the image's root filesystem, top layer first, each layer
    /// unpacked once (by chain id) with overlay whiteouts. An image without layers gets one empty
    /// directory.
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>> {
        require_root("unpacking image layers")?;
        let _lease = self.lease()?;
        let chain = image.chain_ids();
        let mut dirs: Vec<PathBuf> = Vec::with_capacity(chain.len());
        for (i, chain_id) in chain.iter().enumerate() {
            self.cancel.check()?;
            let dir = self.layer_dir(chain_id);
            if !dir.is_dir() {
                let lowers: Vec<PathBuf> = dirs.iter().rev().cloned().collect();
                self.unpack_layer_dir(image, i, &dir, &lowers)?;
            }
            dirs.push(dir);
        }
        if dirs.is_empty() {
            let empty = self.s2i_dir().join("layers/empty");
            fs::create_dir_all(&empty).map_err(io_at("creating", &empty))?;
            dirs.push(empty);
        }
        dirs.reverse();
        Ok(dirs)
    }

    fn unpack_layer_dir(&self, image: &Image, i: usize, dir: &Path, lowers: &[PathBuf]) -> Result<()> {
        let lock_path = dir.with_extension("lock");
        let _lock = flock(&lock_path, FlockOperation::LockExclusive, &self.cancel)?;
        if dir.is_dir() {
            return Ok(()); // another process unpacked it while we waited
        }
        let tmp = self.temp_dir("layer-")?;
        let result = self.apply_layer(image, i, &tmp, Whiteouts::Overlay, lowers).and_then(|_| {
            fs::rename(&tmp, dir).map_err(io_at("storing the unpacked layer", dir))
        });
        if result.is_err() {
            let _ = unpack::remove_tree(&tmp);
        }
        result
    }

    /// Applies layer `i` of `image` to `dir`, checking its diff id as it streams.
    fn apply_layer(&self, image: &Image, i: usize, dir: &Path, whiteouts: Whiteouts, lowers: &[PathBuf]) -> Result<()> {
        let desc = &image.manifest.layers[i];
        let diff_id = &image.diff_ids[i];
        let name = format!("{} of image {}", desc.digest, short_id(&image.id));
        let compression = oci::layer_compression(&desc.media_type).map_err(ImageError::Unsupported)?;
        let file = io::BufReader::with_capacity(256 << 10, self.cancel.reader(self.open_blob(&desc.digest)?));
        let raw: Box<dyn Read> = match compression {
            oci::Compression::None => Box::new(file),
            oci::Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        };
        // The root of a layer dir is the container's `/` where no layer says otherwise.
        rustix::fs::chmod(dir, rustix::fs::Mode::from_raw_mode(0o755)).map_err(|e| ImageError::io("setting the mode of", dir, e.into()))?;
        let opts = Unpack { name: &name, whiteouts, under: "", lowers, cancel: &self.cancel };
        let (rest, stats) = unpack::unpack(dir, HashingReader::new(raw), &opts)?;
        let (actual, _) = rest.finish().map_err(|source| ImageError::Stream { what: format!("layer {name}"), source })?;
        if &actual != diff_id {
            return Err(ImageError::DigestMismatch { what: format!("layer {name} (uncompressed)"), expected: diff_id.to_string(), actual: actual.to_string() });
        }
        debug!("unpacked layer {name}: {} entries, {} bytes", stats.entries, stats.bytes);
        Ok(())
    }

    /// Applies all of the image's layers, in order, into `dir` (made when missing), whiteouts as
    /// real deletions: the root filesystem as one directory, for when overlay is not available.
    pub fn flatten_into(&self, image: &Image, dir: &Path) -> Result<()> {
        require_root("unpacking image layers")?;
        let _lease = self.lease()?;
        fs::create_dir_all(dir).map_err(io_at("creating", dir))?;
        for i in 0..image.manifest.layers.len() {
            self.apply_layer(image, i, dir, Whiteouts::Apply, &[])?;
        }
        Ok(())
    }
}

/// The short form an image or layer is shown by (`sha256:0123456789ab…` → `0123456789ab`), as
/// Docker does.
pub(crate) use s2i_registry::digest::short_id;

/// A name as the store keeps it: `busybox` → `docker.io/library/busybox:latest`.
pub fn normalize_name(name: &str) -> Result<String> {
    let r = ImageRef::parse(name).map_err(|reason| ImageError::Reference { reference: name.into(), reason })?;
    if r.digest.is_some() {
        return Err(ImageError::Reference { reference: name.into(), reason: "a tag cannot carry a digest".into() });
    }
    Ok(r.normalized())
}

/// Creates `dir` and its missing parents 0700.
fn private_dirs(dir: &Path) -> Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_at("creating", dir))
}

/// Makes the store root `root` reachable by its owner only: created 0700 with any missing
/// parents (`$XDG_DATA_HOME/s2i` too), an existing one tightened to 0700 with a warning, and one
/// owned by another user refused: whoever owns it could chmod it open again, or swap what is
/// inside for links that the engine, as root, would follow.
pub(crate) fn make_private(root: &Path) -> Result<()> {
    private_dirs(root)?;
    let meta = fs::metadata(root).map_err(io_at("reading the mode of", root))?;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(ImageError::StoreNotOwned { path: root.to_path_buf(), owner: meta.uid(), user: me });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        fs::set_permissions(root, fs::Permissions::from_mode(0o700)).map_err(io_at("making private", root))?;
        warn!(
            "the OCI store {} was open to other users (mode {mode:o}); it is now 0700, so that no one else can read or run what its images hold",
            root.display()
        );
    }
    Ok(())
}

pub(crate) fn require_root(what: &'static str) -> Result<()> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(ImageError::NotRoot(what))
    }
}
