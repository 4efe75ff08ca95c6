//! Images to and from a registry, through `s2i_registry`'s client: a pull streams each layer into
//! the store's blobs (verified by the client as it arrives and by the store as it lands, never
//! held whole in memory), then records the manifest under the image's name; a push streams the
//! store's blobs out and puts the manifest last. Progress goes out per layer.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use s2i_engine::{EngineError, LayerPhase, Progress, ProgressSink};
use s2i_registry::client::{BlobPush, RegistryError, Repository};
use s2i_registry::retry::retrying;
use s2i_registry::{ImageRef, RegistryClient, Resolved};
use tokio::sync::mpsc;
use tracing::debug;

use s2i_registry::digest::Digest;
use super::error::ImageError;
use s2i_registry::oci::{self, Descriptor};
use super::store::{normalize_name, short_id, Image, Store};

/// Layers fetched at once (as Docker does by default).
const CONCURRENT_LAYERS: usize = 3;
/// Chunks in flight between the download and the blocking writer: bounded memory per layer.
const CHUNKS_IN_FLIGHT: usize = 16;
/// Progress is reported at most once per this many bytes of a layer.
const PROGRESS_STEP: u64 = 1 << 20;
// Each transfer (a manifest, a config, a layer, a blob pushed) is tried again per the one
// policy of s2i (`s2i_registry::retry`) when its failure is transient
// (`RegistryError::is_transient`).
fn transient_registry(e: &RegistryError) -> Option<String> {
    e.is_transient().then(|| e.to_string())
}

fn transient_engine(e: &EngineError) -> Option<String> {
    e.find_cause::<RegistryError>().and_then(transient_registry)
}

/// A progress event that outlives the borrow `Progress` needs, sent from the layer tasks to the
/// one sink.
struct Event {
    id: String,
    phase: LayerPhase,
    current: u64,
    total: Option<u64>,
}

type Events = mpsc::UnboundedSender<Event>;

fn send(events: &Events, id: &str, phase: LayerPhase, current: u64, total: Option<u64>) {
    let _ = events.send(Event { id: id.to_string(), phase, current, total });
}

fn failed(op: String) -> impl FnOnce(RegistryError) -> EngineError {
    move |e| EngineError::Failed { op, source: Box::new(e) }
}

/// A registry error carried inside an I/O error (what a blob stream ends with), taken out again.
fn registry_error(e: io::Error, registry: &str) -> RegistryError {
    if e.get_ref().is_some_and(|inner| inner.is::<RegistryError>()) {
        return *e.into_inner().and_then(|inner| inner.downcast::<RegistryError>().ok()).expect("checked above");
    }
    RegistryError::Unreachable { registry: registry.to_string(), detail: e.to_string(), cause: Some(Box::new(e)) }
}

async fn on_blocking_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Api { op: "the OCI image store".into(), message: e.to_string(), status: None })
}

/// Runs `work` while forwarding the events it sends to `sink`, then the last ones.
async fn with_progress<T>(
    sink: &mut dyn ProgressSink,
    mut rx: mpsc::UnboundedReceiver<Event>,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let out = loop {
        tokio::select! {
            out = &mut work => break out,
            Some(ev) = rx.recv() => sink.progress(Progress::Layer { id: &ev.id, phase: ev.phase, current: ev.current, total: ev.total }),
        }
    };
    while let Ok(ev) = rx.try_recv() {
        sink.progress(Progress::Layer { id: &ev.id, phase: ev.phase, current: ev.current, total: ev.total });
    }
    out
}

/// Pulls `name` into the store and names it there; `credentials` are for its registry.
pub async fn pull(
    store: &Arc<Store>,
    client: &RegistryClient,
    name: &str,
    credentials: Resolved,
    sink: &mut dyn ProgressSink,
) -> Result<Image, EngineError> {
    pull_image(store, client, name, credentials, sink, true).await
}

/// Records `name`'s manifest (for the host's platform) and config in the store, without its
/// layers: enough to inspect it and to commit a layer on top of it; a push then takes the missing
/// layers from the registry ([`push`]'s `layers_from`).
pub async fn pull_config(store: &Arc<Store>, client: &RegistryClient, name: &str, credentials: Resolved) -> Result<Image, EngineError> {
    pull_image(store, client, name, credentials, &mut |_: Progress<'_>| {}, false).await
}

async fn pull_image(
    store: &Arc<Store>,
    client: &RegistryClient,
    name: &str,
    credentials: Resolved,
    sink: &mut dyn ProgressSink,
    layers: bool,
) -> Result<Image, EngineError> {
    let reference = ImageRef::parse(name).map_err(|reason| ImageError::Reference { reference: name.into(), reason })?;
    let op = format!("pulling {name}");
    let repo = client.repository_of(&reference, credentials);
    let manifest = retrying(&op, transient_registry, || repo.image_manifest(reference.reference())).await.map_err(failed(op.clone()))?;
    for layer in manifest.layers() {
        oci::layer_compression(&layer.media_type).map_err(ImageError::Unsupported)?;
        if !layer.urls.is_empty() {
            return Err(ImageError::Unsupported(format!("pull {name}: its layer {} lives outside the registry (a foreign layer)", layer.digest)).into());
        }
    }
    let config_digest = manifest.config().digest.clone();
    let manifest_digest = Digest::parse(&manifest.raw.digest)
        .ok_or_else(|| ImageError::archive(name, format!("unsupported manifest digest {:?}", manifest.raw.digest)))?;
    // Held until the manifest is recorded: a sweep must not take the blobs in between.
    let lease = {
        let store = store.clone();
        on_blocking_thread(move || store.lease()).await??
    };

    if !store.has_blob(&config_digest) {
        let config = retrying(&op, transient_registry, || repo.config(&manifest)).await.map_err(failed(op.clone()))?;
        let (store, digest, what) = (store.clone(), config_digest.clone(), format!("the config of {name}"));
        on_blocking_thread(move || store.put_blob(&mut &config[..], Some(&digest), &what)).await??;
    }
    if !layers {
        return record(store, name, &reference, &manifest, manifest_digest, lease).await;
    }

    download_layers(store, &repo, manifest.layers().to_vec(), sink, &op).await?;

    let image = record(store, name, &reference, &manifest, manifest_digest, lease).await?;
    sink.progress(Progress::Status(&format!("Digest: {}", image.manifest_digest)));
    sink.progress(Progress::Status(&format!("Status: Downloaded newer image for {name}")));
    debug!("pulled {name} as {}", image.id);
    Ok(image)
}

/// Records a pulled manifest under the image's name (a digest reference gets no name).
async fn record(
    store: &Arc<Store>,
    name: &str,
    reference: &ImageRef,
    manifest: &s2i_registry::client::manifest::Manifest,
    manifest_digest: Digest,
    lease: super::store::Lease,
) -> Result<Image, EngineError> {
    let raw = manifest.raw.clone();
    let stored_name = normalize_name(name).ok().filter(|_| reference.digest.is_none());
    let store2 = store.clone();
    let image = on_blocking_thread(move || -> Result<Image, ImageError> {
        let (digest, size) = store2.put_blob(&mut &raw.bytes[..], Some(&manifest_digest), "the manifest")?;
        let media = if raw.media_type.is_empty() { oci::OCI_MANIFEST.to_string() } else { raw.media_type.clone() };
        store2.add_manifest(&Descriptor::new(&media, digest.clone(), size), stored_name.as_slice())?;
        let index = store2.read_index()?;
        store2.load_image(&digest, &index)
    })
    .await??;
    drop(lease);
    Ok(image)
}

/// Downloads the layers of the store's `image` that the store lacks from `repo` (where the image
/// came from), each streamed into the blobs; for an image recorded by [`pull_config`] that must
/// be written whole (an archive).
pub async fn fetch_layers(store: &Arc<Store>, repo: &Repository<'_>, image: &Image, sink: &mut dyn ProgressSink) -> Result<(), EngineError> {
    let op = format!("pulling the layers of {}/{}", repo.registry(), repo.path());
    let layers = image.manifest.layers.iter().filter(|l| !store.has_blob(&l.digest)).cloned().collect();
    download_layers(store, repo, layers, sink, &op).await
}

/// Downloads `layers` from `repo` into the store's blobs, several at a time, each retried on its
/// own, with progress to `sink`.
async fn download_layers(store: &Arc<Store>, repo: &Repository<'_>, layers: Vec<Descriptor>, sink: &mut dyn ProgressSink, op: &str) -> Result<(), EngineError> {
    let (tx, rx) = mpsc::unbounded_channel();
    // The stream owns the sender: once every download is done, nothing holds it.
    let downloads = futures_util::stream::iter(layers.into_iter().map(move |layer| {
        let tx = tx.clone();
        async move {
            let what = format!("pulling layer {}", short_id(layer.digest.as_str()));
            let transient = |e: &Fetch| match e {
                Fetch::Registry(e) => transient_registry(e),
                _ => None,
            };
            retrying(&what, transient, || fetch_layer(store, repo, layer.clone(), &tx)).await
        }
    }))
    .buffer_unordered(CONCURRENT_LAYERS)
    .try_collect::<Vec<()>>();
    with_progress(sink, rx, downloads).await.map_err(|e| match e {
        Fetch::Registry(e) => failed(op.to_string())(e),
        Fetch::Store(e) => e.into(),
        Fetch::Engine(e) => e,
    })?;
    Ok(())
}

impl Image {
    /// The image's layers as a registry names them, bottom first.
    pub fn remote_layers(&self) -> Vec<Descriptor> {
        self.manifest.layers.clone()
    }
}

/// How a layer fetch failed.
enum Fetch {
    Registry(RegistryError),
    Store(ImageError),
    Engine(EngineError),
}

/// One layer into the store's blobs (nothing when it is there already).
async fn fetch_layer(store: &Arc<Store>, repo: &Repository<'_>, layer: Descriptor, events: &Events) -> Result<(), Fetch> {
    let id = short_id(layer.digest.as_str()).to_string();
    let digest = layer.digest.clone();
    if store.has_blob(&digest) {
        send(events, &id, LayerPhase::Exists, layer.size, Some(layer.size));
        return Ok(());
    }
    send(events, &id, LayerPhase::Waiting, 0, Some(layer.size));
    let mut stream = repo.blob(&layer).await.map_err(Fetch::Registry)?;
    // The blocking side writes (and hashes again) what the download hands it, chunk by chunk.
    let (chunks, rx) = mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    let writer = {
        let (store, digest, what) = (store.clone(), digest.clone(), format!("layer {} of {}/{}", layer.digest, repo.registry(), repo.path()));
        tokio::task::spawn_blocking(move || store.put_blob(&mut ChannelReader::new(rx), Some(&digest), &what))
    };
    let mut got = 0u64;
    let mut shown = 0u64;
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                got += bytes.len() as u64;
                if chunks.send(Ok(bytes)).await.is_err() {
                    break; // the writer failed; its error says why
                }
                if got - shown >= PROGRESS_STEP || got == layer.size {
                    shown = got;
                    send(events, &id, LayerPhase::Downloading, got, Some(layer.size));
                }
            }
            Err(e) => {
                // The writer must not store what came before the error.
                let _ = chunks.send(Err(io::Error::new(e.kind(), e.to_string()))).await;
                failure = Some(registry_error(e, repo.registry()));
                break;
            }
        }
    }
    drop(chunks);
    let written = writer.await.map_err(|e| Fetch::Engine(EngineError::Api { op: "the OCI image store".into(), message: e.to_string(), status: None }));
    if let Some(e) = failure {
        return Err(Fetch::Registry(e));
    }
    written?.map_err(Fetch::Store)?;
    send(events, &id, LayerPhase::Done, layer.size, Some(layer.size));
    Ok(())
}

/// A `Read` over chunks sent from an async task (which waits while this side is behind).
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> ChannelReader {
        ChannelReader { rx, current: Bytes::new() }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Pushes the store's `image` as `name` (which names its registry); returns the manifest digest.
pub async fn push(
    store: &Arc<Store>,
    client: &RegistryClient,
    image: &Image,
    name: &str,
    credentials: Resolved,
    layers_from: Option<&Repository<'_>>,
    sink: &mut dyn ProgressSink,
) -> Result<String, EngineError> {
    let reference = ImageRef::parse(name).map_err(|reason| ImageError::Reference { reference: name.into(), reason })?;
    if reference.digest.is_some() {
        return Err(ImageError::Reference { reference: name.into(), reason: "push to a tag, not a digest".into() }.into());
    }
    let op = format!("pushing {name}");
    let repo = client.repository_of(&reference, credentials);
    let lease = {
        let store = store.clone();
        on_blocking_thread(move || store.lease()).await??
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let blobs: Vec<Descriptor> = image.manifest.layers.iter().cloned().chain([image.manifest.config.clone()]).collect();
    let uploads = async {
        for blob in &blobs {
            let what = format!("pushing layer {}", short_id(blob.digest.as_str()));
            if !store.has_blob(&blob.digest) {
                if let Some(from) = layers_from {
                    retrying(&what, transient_engine, || copy_blob(from, &repo, blob, &tx)).await?;
                    continue;
                }
            }
            retrying(&what, transient_engine, || push_blob(store, &repo, blob, &tx)).await?;
        }
        Ok::<(), EngineError>(())
    };
    with_progress(sink, rx, uploads).await.map_err(|e| match e {
        EngineError::Failed { source, .. } => EngineError::Failed { op: op.clone(), source },
        other => other,
    })?;
    let manifest_digest = Digest::parse(&image.manifest_digest).expect("a stored digest");
    let bytes = {
        let store = store.clone();
        on_blocking_thread(move || -> Result<Vec<u8>, ImageError> {
            let mut data = Vec::new();
            store.open_blob(&manifest_digest)?.read_to_end(&mut data).map_err(|e| ImageError::io("reading", store.blob_path(&manifest_digest), e))?;
            Ok(data)
        })
        .await??
    };
    let media = image.manifest.media_type.clone().unwrap_or_else(|| oci::OCI_MANIFEST.to_string());
    let tag = reference.tag.clone().unwrap_or_else(|| "latest".into());
    let bytes = Bytes::from(bytes);
    let digest = retrying(&op, transient_registry, || repo.push_manifest(&tag, &media, bytes.clone())).await.map_err(failed(op.clone()))?;
    drop(lease);
    sink.progress(Progress::Status(&format!("{tag}: digest: {digest} size: {}", image.manifest_size)));
    Ok(digest)
}

async fn push_blob(store: &Arc<Store>, repo: &Repository<'_>, blob: &Descriptor, events: &Events) -> Result<(), EngineError> {
    let id = short_id(blob.digest.as_str()).to_string();
    let path = store.blob_path(&blob.digest);
    let file = tokio::fs::File::open(&path).await.map_err(|e| ImageError::io("opening", path.clone(), e))?;
    let size = blob.size;
    let (counter, events2) = (Arc::new(std::sync::atomic::AtomicU64::new(0)), events.clone());
    let id2 = id.clone();
    let body = tokio_util::io::ReaderStream::with_capacity(file, 256 << 10).map(move |chunk| {
        if let Ok(c) = &chunk {
            let now = counter.fetch_add(c.len() as u64, std::sync::atomic::Ordering::Relaxed) + c.len() as u64;
            send(&events2, &id2, LayerPhase::Pushing, now, Some(size));
        }
        chunk
    });
    send(events, &id, LayerPhase::Waiting, 0, Some(size));
    let pushed = repo.push_blob(blob, body).await.map_err(failed(String::new()))?;
    let phase = if pushed == BlobPush::Exists { LayerPhase::Exists } else { LayerPhase::Done };
    send(events, &id, phase, size, Some(size));
    Ok(())
}

/// A blob the store does not hold, into `to` from `from`: mounted when both are repositories of
/// one registry (nothing moves), else streamed from one registry to the other (never written to
/// disk).
async fn copy_blob(from: &Repository<'_>, to: &Repository<'_>, blob: &Descriptor, events: &Events) -> Result<(), EngineError> {
    let id = short_id(blob.digest.as_str()).to_string();
    let size = blob.size;
    let digest = blob.digest.to_string();
    if to.blob_exists(&digest, true).await.map_err(failed(String::new()))?.is_some() {
        send(events, &id, LayerPhase::Exists, size, Some(size));
        return Ok(());
    }
    if from.registry() == to.registry() {
        match to.mount_blob(&digest, from.path()).await {
            Ok(true) => {
                debug!("mounted {digest} from {} into {}", from.path(), to.path());
                send(events, &id, LayerPhase::Exists, size, Some(size));
                return Ok(());
            }
            Ok(false) => debug!("{} would not mount {digest} from {}: copying it", to.registry(), from.path()),
            Err(e) => debug!("mounting {digest} from {} failed ({e}): copying it", from.path()),
        }
    }
    send(events, &id, LayerPhase::Waiting, 0, Some(size));
    let stream = from.blob(blob).await.map_err(failed(String::new()))?;
    let (counter, events2, id2) = (Arc::new(std::sync::atomic::AtomicU64::new(0)), events.clone(), id.clone());
    let body = stream.map(move |chunk| {
        if let Ok(c) = &chunk {
            let now = counter.fetch_add(c.len() as u64, std::sync::atomic::Ordering::Relaxed) + c.len() as u64;
            send(&events2, &id2, LayerPhase::Pushing, now, Some(size));
        }
        chunk
    });
    let pushed = to.push_blob(blob, body).await.map_err(failed(String::new()))?;
    let phase = if pushed == BlobPush::Exists { LayerPhase::Exists } else { LayerPhase::Done };
    send(events, &id, phase, size, Some(size));
    Ok(())
}
