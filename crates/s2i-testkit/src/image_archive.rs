//! Hand-made images as `docker save` archives, for what no Dockerfile makes: layers with
//! FIFOs, device nodes and hard links across layers, or a layer whose unpacking takes long.
//! The daemonless engine takes them as `docker-archive:PATH`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;

/// One layer of a [`write_docker_archive`].
pub enum Layer {
    /// A layer tar made by the test (e.g. with the `tar` crate), stored as it is.
    Tar(Vec<u8>),
    /// One regular file at `path` holding `size` zero bytes, gzip-compressed: a few KiB on disk
    /// per GiB, but unpacking it writes every byte.
    Zeros {
        /// Where the file is in the image.
        path: String,
        /// Its size in bytes.
        size: u64,
    },
}

const MIB: usize = 1 << 20;

/// Writes `layers` as a `docker save` archive (legacy form: `<n>/layer.tar`, `<config>.json`,
/// `manifest.json`) at `path`, tagged `tag`. `config` is the image's `config` object (`Cmd`,
/// `User`, `Labels`…); the archive's own config gets its `rootfs.diff_ids` computed here.
pub fn write_docker_archive(path: &Path, tag: &str, config: serde_json::Value, layers: &[Layer]) {
    let mut blobs: Vec<(Vec<u8>, String)> = Vec::new();
    for layer in layers {
        blobs.push(match layer {
            Layer::Tar(tar) => (tar.clone(), sha256(&[tar])),
            Layer::Zeros { path, size } => zeros_layer(path, *size),
        });
    }
    let file = File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    write_archive(BufWriter::new(file), &blobs, &[tag], config).flush().unwrap();
}

/// [`write_docker_archive`] of plain layer tars, in memory, with any number of tags.
pub fn docker_archive(layers: &[Vec<u8>], tags: &[&str], config: serde_json::Value) -> Vec<u8> {
    let blobs: Vec<(Vec<u8>, String)> = layers.iter().map(|l| (l.clone(), sha256(&[l]))).collect();
    write_archive(Vec::new(), &blobs, tags, config)
}

/// The archive of `blobs` (each with its diff id) to `out`; returns `out`.
fn write_archive<W: Write>(out: W, blobs: &[(Vec<u8>, String)], tags: &[&str], config: serde_json::Value) -> W {
    let diff_ids: Vec<&str> = blobs.iter().map(|(_, d)| d.as_str()).collect();
    let image_config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2020-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let image_config = serde_json::to_vec(&image_config).unwrap();
    let config_name = format!("{}.json", &sha256(&[&image_config])["sha256:".len()..]);
    let mut archive = tar::Builder::new(out);
    let mut paths = Vec::new();
    for (i, (blob, _)) in blobs.iter().enumerate() {
        let p = format!("{:064x}/layer.tar", i + 1);
        append(&mut archive, &p, blob);
        paths.push(p);
    }
    append(&mut archive, &config_name, &image_config);
    let manifest = serde_json::json!([{ "Config": config_name, "RepoTags": tags, "Layers": paths }]);
    append(&mut archive, "manifest.json", &serde_json::to_vec(&manifest).unwrap());
    archive.into_inner().unwrap()
}

fn append<W: Write>(archive: &mut tar::Builder<W>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    archive.append_data(&mut h, path, data).unwrap();
}

fn sha256(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let hex: String = ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The gzip blob of a one-file layer of zeros, and its diff id. Past its header, the tar is
/// nothing but zeros (the data, its padding, the end-of-archive blocks): the blob is the header
/// in one gzip member and then the same 1 MiB member of zeros, repeated.
fn zeros_layer(path: &str, size: u64) -> (Vec<u8>, String) {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let zeros_after = size.div_ceil(512) * 512 + 1024;
    let member = |data: &[u8]| {
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    };
    let zero_mib = vec![0u8; MIB];
    let mut blob = member(h.as_bytes());
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(h.as_bytes());
    let full = member(&zero_mib);
    for _ in 0..zeros_after / MIB as u64 {
        blob.extend_from_slice(&full);
        ctx.update(&zero_mib);
    }
    let rest = (zeros_after % MIB as u64) as usize;
    blob.extend_from_slice(&member(&zero_mib[..rest]));
    ctx.update(&zero_mib[..rest]);
    let hex: String = ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    (blob, format!("sha256:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_zeros_layer_is_one_file_of_zeros_and_its_diff_id_is_its_hash() {
        let (blob, diff_id) = zeros_layer("big", 3 * MIB as u64 + 5);
        assert!(blob.len() < 64 << 10, "{} bytes", blob.len());
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(&blob[..]).read_to_end(&mut tar).unwrap();
        assert_eq!(sha256(&[&tar]), diff_id);
        let mut archive = tar::Archive::new(&tar[..]);
        let mut entries = archive.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        assert_eq!(e.path().unwrap().to_str(), Some("big"));
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        assert!(data.len() == 3 * MIB + 5 && data.iter().all(|b| *b == 0));
        drop(e);
        assert!(entries.next().is_none());
    }
}
