//! The OCI runtime bundle's `config.json`, from `oci-spec`'s types: what Docker would give the
//! same container (namespaces, mounts, Docker's default capabilities, masked and read-only paths,
//! its seccomp profile), with rlimits that fit the host and the container's own `/etc/hosts`,
//! `/etc/resolv.conf` and `/etc/hostname`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use super::error::{Result, RunError};
use super::seccomp::{Machine, Security};
use super::user::ResolvedUser;

/// Docker's default capability set (moby's `caps.DefaultCapabilities`).
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Docker's masked and read-only paths under /proc and /sys (recent releases added
/// `/proc/interrupts` and the power meters of `/sys/devices/virtual/powercap` to the older ten). runc
/// mounts an empty read-only tmpfs over a directory, `/dev/null` over a file, and skips a path
/// the host does not have.
const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Docker's /dev/shm size when none is asked for.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;
/// The most processes one build user may have, whatever the host allows.
const NPROC_CAP: u64 = 32768;

/// The container's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// The host's network namespace (the default: there is no bridge without a daemon).
    Host,
    /// A network namespace of its own, with only `lo` (up), bound at this path.
    None { netns: PathBuf },
}

/// What `--network` asks for, before a namespace exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    Host,
    None,
}

impl NetworkMode {
    /// Docker's names: no mode, `default` and `bridge` mean the daemon's bridge, which this engine
    /// does not have: they get the host's network, which gives builds the same access out.
    pub fn parse(mode: Option<&str>) -> Result<NetworkMode> {
        match mode.unwrap_or("") {
            "" | "default" | "bridge" | "host" => Ok(NetworkMode::Host),
            "none" => Ok(NetworkMode::None),
            other => Err(RunError::BadNetwork(other.to_string())),
        }
    }
}

/// A `-v SOURCE:DEST[:OPTIONS]` bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub read_only: bool,
}

impl Bind {
    pub fn parse(spec: &str) -> Result<Bind> {
        let bad = |reason: &str| RunError::BadBind { spec: spec.to_string(), reason: reason.to_string() };
        let parts: Vec<&str> = spec.split(':').collect();
        let (source, destination, options) = match parts.as_slice() {
            [s, d] => (*s, *d, ""),
            [s, d, o] => (*s, *d, *o),
            _ => return Err(bad("expected SOURCE:DESTINATION[:OPTIONS]")),
        };
        if !source.starts_with('/') {
            return Err(bad("the source must be an absolute host path (the oci engine has no named volumes)"));
        }
        if !destination.starts_with('/') || Path::new(destination).components().any(|c| c.as_os_str() == "..") {
            return Err(bad("the destination must be an absolute path without '..'"));
        }
        if Path::new(destination) == Path::new("/") {
            return Err(bad("the destination cannot be /"));
        }
        let mut read_only = false;
        for opt in options.split(',').filter(|o| !o.is_empty()) {
            match opt {
                "ro" => read_only = true,
                "rw" | "z" | "Z" | "private" | "rprivate" | "nocopy" => {}
                other => return Err(bad(&format!("unknown option {other:?}"))),
            }
        }
        let source = PathBuf::from(source);
        if !source.exists() {
            return Err(bad("the source does not exist on the host"));
        }
        Ok(Bind { source, destination: PathBuf::from(destination), read_only })
    }
}

/// `HOST:IP` of `--add-host`, as an `/etc/hosts` line.
pub fn host_line(spec: &str) -> Result<String> {
    let bad = || RunError::BadHost { spec: spec.to_string() };
    let (host, ip) = spec.split_once(':').ok_or_else(bad)?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control() || c == '#') {
        return Err(bad());
    }
    let ip = IpAddr::from_str(ip).map_err(|_| bad())?;
    Ok(format!("{ip}\t{host}\n"))
}

/// The container's `/etc/hosts`: the host's own for the host network (as Docker does), Docker's
/// standard lines otherwise, then the `--add-host` entries.
pub fn hosts_file(network: NetworkMode, host_hosts: Option<&str>, extra_hosts: &[String]) -> Result<String> {
    let mut text = match (network, host_hosts) {
        (NetworkMode::Host, Some(h)) => {
            let mut h = h.to_string();
            if !h.is_empty() && !h.ends_with('\n') {
                h.push('\n');
            }
            h
        }
        _ => "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
              ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
            .to_string(),
    };
    for spec in extra_hosts {
        text.push_str(&host_line(spec)?);
    }
    Ok(text)
}

/// Capability names as Docker takes them (`NET_RAW`, `cap_net_raw`, `ALL`).
pub fn parse_capability(name: &str) -> Result<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare).map_err(|_| RunError::UnknownCapability(name.to_string()))
}

/// Docker's default set minus `cap_drop`.
pub fn capabilities(cap_drop: &[String]) -> Result<HashSet<Capability>> {
    let mut caps: HashSet<Capability> = DEFAULT_CAPABILITIES.into_iter().collect();
    for name in cap_drop {
        if name.trim().eq_ignore_ascii_case("ALL") {
            caps.clear();
        } else {
            caps.remove(&parse_capability(name)?);
        }
    }
    Ok(caps)
}

/// Limits for the container's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimits {
    pub nofile: u64,
    pub nproc: u64,
}

impl Rlimits {
    /// Open files at the host's hard limit (what `ulimit -Hn` shows), processes at the host's
    /// hard limit but at most 32768.
    pub fn from_host() -> Rlimits {
        use rustix::process::{getrlimit, Resource};
        let nofile = getrlimit(Resource::Nofile).maximum.unwrap_or(1 << 20);
        let nproc = getrlimit(Resource::Nproc).maximum.unwrap_or(NPROC_CAP).min(NPROC_CAP);
        Rlimits { nofile, nproc }
    }
}

/// Cgroup limits that runc itself applies (used where s2i cannot set them on a parent cgroup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuncResources {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
}

/// The container's own copies of the files Docker bind-mounts into /etc.
#[derive(Debug, Clone)]
pub struct EtcFiles {
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
    pub hostname: PathBuf,
}

/// Everything `config.json` is made from.
#[derive(Debug, Clone)]
pub struct BundleParams<'a> {
    pub rootfs: &'a Path,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: &'a ResolvedUser,
    pub hostname: String,
    pub network: &'a Network,
    pub cap_drop: &'a [String],
    pub binds: &'a [Bind],
    /// tmpfs mounts: the path and its mount options.
    pub tmpfs: &'a [(String, Vec<String>)],
    pub etc: &'a EtcFiles,
    pub cgroups_path: String,
    pub resources: RuncResources,
    pub shm_size: u64,
    pub rlimits: Rlimits,
    pub security: &'a Security,
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(spec_error)
}

fn bind_mount(source: &Path, destination: &Path, read_only: bool) -> Result<Mount> {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    if read_only {
        options.push("ro".to_string());
    }
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(options)
        .build()
        .map_err(spec_error)
}

fn spec_error(e: oci_spec::OciSpecError) -> RunError {
    RunError::io("building the container's config.json", std::io::Error::other(e.to_string()))
}

/// The mounts in the order Docker makes them.
pub fn mounts(p: &BundleParams<'_>) -> Result<Vec<Mount>> {
    let shm = format!("size={}", p.shm_size);
    let mut m = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"])?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"])?,
        mount("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", "ro"])?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", &shm])?,
        bind_mount(&p.etc.resolv_conf, Path::new("/etc/resolv.conf"), false)?,
        bind_mount(&p.etc.hostname, Path::new("/etc/hostname"), false)?,
        bind_mount(&p.etc.hosts, Path::new("/etc/hosts"), false)?,
    ];
    for b in p.binds {
        m.push(bind_mount(&b.source, &b.destination, b.read_only)?);
    }
    for (path, options) in p.tmpfs {
        let options: Vec<&str> = options.iter().map(String::as_str).collect();
        m.push(mount(path, "tmpfs", "tmpfs", &options)?);
    }
    Ok(m)
}

/// The whole `config.json`.
pub fn spec(p: &BundleParams<'_>) -> Result<Spec> {
    let caps = capabilities(p.cap_drop)?;
    // Resolved against the bounding set, as Docker does: a call that needs a capability the
    // container can never have stays out.
    let seccomp = p.security.seccomp.as_ref().and_then(|profile| profile.resolve(&caps, &Machine::this()));
    // As Docker does: a non-root user keeps the bounding set but starts with no effective or
    // permitted capabilities (file capabilities and setuid binaries still work).
    let user_caps = if p.user.uid == 0 { caps.clone() } else { HashSet::new() };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps)
        .effective(user_caps.clone())
        .permitted(user_caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(spec_error)?;
    let rlimit = |typ, n: u64| PosixRlimitBuilder::default().typ(typ).soft(n).hard(n).build().map_err(spec_error);
    let user = UserBuilder::default()
        .uid(p.user.uid)
        .gid(p.user.gid)
        .additional_gids(p.user.additional_gids.clone())
        .build()
        .map_err(spec_error)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(p.args.clone())
        .env(p.env.clone())
        .cwd(&p.cwd)
        .capabilities(capabilities)
        .rlimits(vec![
            rlimit(PosixRlimitType::RlimitNofile, p.rlimits.nofile)?,
            rlimit(PosixRlimitType::RlimitNproc, p.rlimits.nproc)?,
        ])
        .no_new_privileges(p.security.no_new_privileges)
        .build()
        .map_err(spec_error)?;

    let ns = |typ, path: Option<&Path>| {
        let b = LinuxNamespaceBuilder::default().typ(typ);
        match path {
            Some(path) => b.path(path),
            None => b,
        }
        .build()
        .map_err(spec_error)
    };
    let mut namespaces = vec![
        ns(LinuxNamespaceType::Pid, None)?,
        ns(LinuxNamespaceType::Ipc, None)?,
        ns(LinuxNamespaceType::Uts, None)?,
        ns(LinuxNamespaceType::Mount, None)?,
    ];
    if let Network::None { netns } = p.network {
        namespaces.push(ns(LinuxNamespaceType::Network, Some(netns))?);
    }

    let deny_devices = LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().map_err(spec_error)?;
    let mut resources = LinuxResourcesBuilder::default().devices(vec![deny_devices]);
    if let Some(limit) = p.resources.memory {
        resources = resources.memory(LinuxMemoryBuilder::default().limit(limit as i64).build().map_err(spec_error)?);
    }
    if let Some(limit) = p.resources.pids {
        resources = resources.pids(LinuxPidsBuilder::default().limit(limit as i64).build().map_err(spec_error)?);
    }
    let mut linux = LinuxBuilder::default();
    if let Some(seccomp) = seccomp {
        linux = linux.seccomp(seccomp);
    }
    let linux = linux
        .namespaces(namespaces)
        .cgroups_path(&p.cgroups_path)
        .resources(resources.build().map_err(spec_error)?)
        .masked_paths(MASKED_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .readonly_paths(READONLY_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(spec_error)?;

    SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path(p.rootfs).readonly(false).build().map_err(spec_error)?)
        .hostname(&p.hostname)
        .mounts(mounts(p)?)
        .process(process)
        .linux(linux)
        .build()
        .map_err(spec_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params<'a>(user: &'a ResolvedUser, network: &'a Network, cap_drop: &'a [String], binds: &'a [Bind], etc: &'a EtcFiles) -> BundleParams<'a> {
        BundleParams {
            rootfs: Path::new("/state/c1/rootfs"),
            args: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/opt/app-root/src".into(),
            user,
            hostname: "c1".into(),
            network,
            cap_drop,
            binds,
            tmpfs: &[],
            etc,
            cgroups_path: "s2i-c1/ctr".into(),
            resources: RuncResources::default(),
            shm_size: DEFAULT_SHM_SIZE,
            rlimits: Rlimits { nofile: 20000, nproc: 32768 },
            security: default_security(),
        }
    }

    fn default_security() -> &'static Security {
        static DEFAULT: std::sync::OnceLock<Security> = std::sync::OnceLock::new();
        DEFAULT.get_or_init(Security::default)
    }

    fn etc() -> EtcFiles {
        EtcFiles { hosts: "/state/c1/hosts".into(), resolv_conf: "/state/c1/resolv.conf".into(), hostname: "/state/c1/hostname".into() }
    }

    #[test]
    fn caps_follow_docker_and_cap_drop() {
        let root = ResolvedUser { uid: 0, gid: 0, additional_gids: vec![], home: "/root".into() };
        let (net, etc) = (Network::Host, etc());
        let drop = vec!["net_raw".to_string(), "CAP_CHOWN".to_string()];
        let json = serde_json::to_value(spec(&params(&root, &net, &drop, &[], &etc)).unwrap()).unwrap();
        let caps = &json["process"]["capabilities"];
        let bounding: HashSet<&str> = caps["bounding"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        assert_eq!(bounding.len(), 12);
        assert!(bounding.contains("CAP_KILL") && !bounding.contains("CAP_NET_RAW") && !bounding.contains("CAP_CHOWN"));
        assert_eq!(caps["effective"].as_array().unwrap().len(), 12);
        assert_eq!(caps["inheritable"].as_array().unwrap().len(), 0);

        let user = ResolvedUser { uid: 1001, gid: 0, additional_gids: vec![10], home: "/home/default".into() };
        let json = serde_json::to_value(spec(&params(&user, &net, &[], &[], &etc)).unwrap()).unwrap();
        assert_eq!(json["process"]["capabilities"]["bounding"].as_array().unwrap().len(), 14);
        assert_eq!(json["process"]["capabilities"]["effective"].as_array().unwrap().len(), 0);
        assert_eq!(json["process"]["user"], serde_json::json!({"uid": 1001, "gid": 0, "additionalGids": [10]}));

        assert!(capabilities(&["all".into()]).unwrap().is_empty());
        assert!(matches!(capabilities(&["NET_WIZARD".into()]), Err(RunError::UnknownCapability(c)) if c == "NET_WIZARD"));
    }

    #[test]
    fn seccomp_no_new_privileges_and_masked_paths() {
        let user = ResolvedUser { uid: 1001, gid: 0, additional_gids: vec![], home: "/home/default".into() };
        let (net, etc) = (Network::Host, etc());
        let json = serde_json::to_value(spec(&params(&user, &net, &[], &[], &etc)).unwrap()).unwrap();
        // Docker's defaults: its seccomp profile, setuid binaries working.
        assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(json["linux"]["seccomp"]["syscalls"].as_array().is_some_and(|s| s.len() > 10));
        assert_eq!(json["process"]["noNewPrivileges"], false);
        let masked = json["linux"]["maskedPaths"].as_array().unwrap();
        for path in ["/proc/kcore", "/proc/keys", "/proc/interrupts", "/sys/firmware", "/sys/devices/virtual/powercap"] {
            assert!(masked.iter().any(|m| m == path), "{path} is not masked");
        }
        assert!(json["linux"]["readonlyPaths"].as_array().unwrap().iter().any(|p| p == "/proc/sys"));

        let security = Security { seccomp: None, no_new_privileges: true };
        let p = BundleParams { security: &security, ..params(&user, &net, &[], &[], &etc) };
        let json = serde_json::to_value(spec(&p).unwrap()).unwrap();
        assert!(json["linux"].get("seccomp").is_none(), "seccomp=unconfined: no filter");
        assert_eq!(json["process"]["noNewPrivileges"], true);
    }

    #[test]
    fn namespaces_mounts_and_limits() {
        let root = ResolvedUser { uid: 0, gid: 0, additional_gids: vec![], home: "/root".into() };
        let etc = etc();
        let binds = vec![Bind { source: "/srv/data".into(), destination: "/data".into(), read_only: true }];
        let none = Network::None { netns: "/state/c1/netns".into() };
        let mut p = params(&root, &none, &[], &binds, &etc);
        p.resources = RuncResources { memory: Some(1 << 30), pids: Some(100) };
        let json = serde_json::to_value(spec(&p).unwrap()).unwrap();
        let ns: Vec<(String, Option<String>)> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["type"].as_str().unwrap().to_string(), n["path"].as_str().map(str::to_string)))
            .collect();
        assert!(ns.contains(&("network".into(), Some("/state/c1/netns".into()))), "{ns:?}");
        assert!(!ns.iter().any(|(t, _)| t == "user" || t == "cgroup"));
        let mounts = json["mounts"].as_array().unwrap();
        let dests: Vec<&str> = mounts.iter().map(|m| m["destination"].as_str().unwrap()).collect();
        assert_eq!(dests[..4], ["/proc", "/dev", "/dev/pts", "/sys"]);
        assert!(dests.ends_with(&["/etc/hosts", "/data"]));
        let shm = mounts.iter().find(|m| m["destination"] == "/dev/shm").unwrap();
        assert!(shm["options"].as_array().unwrap().iter().any(|o| o == "size=67108864"));
        let data = mounts.last().unwrap();
        assert_eq!(data["source"], "/srv/data");
        assert!(data["options"].as_array().unwrap().iter().any(|o| o == "ro"));
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 1 << 30);
        assert_eq!(json["linux"]["resources"]["pids"]["limit"], 100);
        assert_eq!(json["linux"]["cgroupsPath"], "s2i-c1/ctr");
        let rl = json["process"]["rlimits"].as_array().unwrap();
        assert!(rl.contains(&serde_json::json!({"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000})), "{rl:?}");
        assert_eq!(json["process"]["terminal"], false);

        let host = Network::Host;
        let json = serde_json::to_value(spec(&params(&root, &host, &[], &[], &etc)).unwrap()).unwrap();
        assert!(!json["linux"]["namespaces"].as_array().unwrap().iter().any(|n| n["type"] == "network"));
        assert!(json["linux"]["resources"].get("memory").is_none());
    }

    #[test]
    fn binds_hosts_and_networks_parse() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().display().to_string();
        assert_eq!(
            Bind::parse(&format!("{src}:/data:ro,Z")).unwrap(),
            Bind { source: dir.path().into(), destination: "/data".into(), read_only: true }
        );
        for bad in ["vol:/data", &format!("{src}:data"), &format!("{src}:/"), &format!("{src}:/a/../b"), "/no/such/dir/s2i:/x", &format!("{src}:/d:exec")] {
            assert!(matches!(Bind::parse(bad), Err(RunError::BadBind { .. })), "{bad}");
        }
        assert_eq!(host_line("db:10.0.0.5").unwrap(), "10.0.0.5\tdb\n");
        assert_eq!(host_line("v6:::1").unwrap(), "::1\tv6\n");
        for bad in ["db", "db:notanip", "a b:1.2.3.4", "x\n1.2.3.4 evil:1.2.3.4", ":1.2.3.4"] {
            assert!(matches!(host_line(bad), Err(RunError::BadHost { .. })), "{bad:?}");
        }
        let hosts = hosts_file(NetworkMode::None, Some("1.1.1.1 hostonly\n"), &["db:10.0.0.5".into()]).unwrap();
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n") && hosts.ends_with("10.0.0.5\tdb\n") && !hosts.contains("hostonly"));
        let hosts = hosts_file(NetworkMode::Host, Some("1.1.1.1 hostonly"), &[]).unwrap();
        assert_eq!(hosts, "1.1.1.1 hostonly\n");
        assert_eq!(NetworkMode::parse(None).unwrap(), NetworkMode::Host);
        assert_eq!(NetworkMode::parse(Some("bridge")).unwrap(), NetworkMode::Host);
        assert_eq!(NetworkMode::parse(Some("none")).unwrap(), NetworkMode::None);
        assert!(matches!(NetworkMode::parse(Some("container:x")), Err(RunError::BadNetwork(_))));
    }
}
