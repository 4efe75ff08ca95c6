//! Seccomp: the system call filter runc installs in every container (`linux.seccomp`).
//!
//! Profiles are written in Docker's JSON format, the files `docker run --security-opt
//! seccomp=FILE` and `podman run` read: an OCI `LinuxSeccomp` whose rules may carry conditions
//! (`includes`, `excludes`) on the container's capabilities, the machine's architecture and the
//! kernel's version. They are resolved against each container when its config.json is written,
//! as Docker does, so that dropping a capability also drops the calls that need it.
//!
//! [`Profile::docker_default`] is what Docker and Podman apply when nothing else is asked for:
//! the allow-list, argument rules and capability-dependent groups of moby's default profile,
//! written out here. Everything else fails with `EPERM`; `clone3` fails with `ENOSYS` so that
//! the C library falls back to `clone`, whose namespace flags the filter can see.

use std::collections::HashSet;
use std::path::PathBuf;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use s2i_engine::{SeccompProfile, SecurityOptions};
use serde::{Deserialize, Deserializer};

use super::bundle::parse_capability;
use super::error::{Result, RunError};

/// What a container gets of `--security-opt`, ready for its config.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// `None`: no filter (`seccomp=unconfined`).
    pub seccomp: Option<Profile>,
    /// Setuid and setgid bits and file capabilities grant nothing in the container.
    pub no_new_privileges: bool,
}

impl Security {
    /// The default profile, none, or the user's file parsed; an error names a bad file.
    pub fn from_options(options: &SecurityOptions) -> Result<Security> {
        let seccomp = match &options.seccomp {
            SeccompProfile::Default => Some(Profile::docker_default()),
            SeccompProfile::Unconfined => None,
            SeccompProfile::File { path, json } => Some(Profile::parse(json, &path.display().to_string())?),
        };
        Ok(Security { seccomp, no_new_privileges: options.no_new_privileges })
    }
}

impl Default for Security {
    /// Docker's default: its seccomp profile, and setuid binaries working.
    fn default() -> Security {
        Security { seccomp: Some(Profile::docker_default()), no_new_privileges: false }
    }
}

/// A seccomp profile in Docker's format, before its conditions are resolved.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// What any call no rule names gets; with neither this nor rules, there is no filter.
    #[serde(default)]
    pub default_action: Option<LinuxSeccompAction>,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// The architectures the filter covers, as given; or
    #[serde(default, deserialize_with = "nullable")]
    pub architectures: Vec<Arch>,
    /// per machine architecture, the ones it covers there (Docker's `archMap`).
    #[serde(default, deserialize_with = "nullable")]
    pub arch_map: Vec<ArchGroup>,
    #[serde(default, deserialize_with = "nullable")]
    pub flags: Vec<LinuxSeccompFilterFlag>,
    #[serde(default)]
    pub listener_path: Option<PathBuf>,
    #[serde(default)]
    pub listener_metadata: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub syscalls: Vec<Rule>,
}

/// An architecture and the ones its processes may also run as (x86 and x32 on x86_64).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchGroup {
    pub architecture: Arch,
    #[serde(default, deserialize_with = "nullable")]
    pub sub_architectures: Vec<Arch>,
}

/// One rule: the calls it names get `action` when the arguments match and its conditions hold.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default, deserialize_with = "nullable")]
    pub names: Vec<String>,
    /// The older single-name form.
    #[serde(default)]
    pub name: Option<String>,
    pub action: LinuxSeccompAction,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "nullable")]
    pub args: Vec<LinuxSeccompArg>,
    #[serde(default)]
    pub comment: Option<String>,
    /// The rule applies only where all of these hold…
    #[serde(default, deserialize_with = "nullable")]
    pub includes: Filter,
    /// …and none of these does.
    #[serde(default, deserialize_with = "nullable")]
    pub excludes: Filter,
}

/// Conditions of a rule: capabilities in the container's bounding set, the machine's
/// architecture (Go's names: `amd64`, `arm64`, …), a kernel at least this version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default, deserialize_with = "nullable")]
    pub caps: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub arches: Vec<String>,
    #[serde(default, deserialize_with = "kernel_version")]
    pub min_kernel: Option<(u32, u32)>,
}

impl Filter {
    fn caps(caps: &[&str]) -> Filter {
        Filter { caps: caps.iter().map(|c| c.to_string()).collect(), ..Filter::default() }
    }

    fn arches(arches: &[&str]) -> Filter {
        Filter { arches: arches.iter().map(|a| a.to_string()).collect(), ..Filter::default() }
    }
}

/// `null` as the empty value, as Go's decoder reads it.
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> std::result::Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `"4.8"`: a kernel version and major revision.
fn kernel_version<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<(u32, u32)>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)?.filter(|t| !t.is_empty()) else { return Ok(None) };
    parse_kernel(&text)
        .filter(|v| *v != (0, 0))
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("invalid minKernel {text:?}: expected \"<kernel>.<major>\", as \"4.8\"")))
}

/// The first two numbers of a kernel release (`6.1.0-18-amd64` → (6, 1)).
fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.splitn(3, '.');
    let kernel = parts.next()?.parse().ok()?;
    let major: String = parts.next()?.chars().take_while(char::is_ascii_digit).collect();
    Some((kernel, major.parse().ok()?))
}

/// The machine a profile is resolved for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// Go's name of the architecture, which the profiles' `arches` conditions use.
    pub arch: &'static str,
    /// Its seccomp name, which `archMap` is keyed by.
    pub seccomp_arch: Option<Arch>,
    pub kernel: (u32, u32),
}

impl Machine {
    /// This machine: the architecture s2i was built for, and the running kernel.
    pub fn this() -> Machine {
        let (arch, seccomp_arch) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", Some(Arch::ScmpArchX86_64)),
            "aarch64" => ("arm64", Some(Arch::ScmpArchAarch64)),
            "x86" => ("x86", Some(Arch::ScmpArchX86)),
            "arm" => ("arm", Some(Arch::ScmpArchArm)),
            "riscv64" => ("riscv64", Some(Arch::ScmpArchRiscv64)),
            "s390x" => ("s390x", Some(Arch::ScmpArchS390x)),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", Some(Arch::ScmpArchPpc64le)),
            "powerpc64" => ("ppc64", Some(Arch::ScmpArchPpc64)),
            "loongarch64" => ("loong64", Some(Arch::ScmpArchLoongarch64)),
            other => (other, None),
        };
        let release = rustix::system::uname().release().to_string_lossy().into_owned();
        // An unreadable release counts as new: rules for older kernels only are rare.
        let kernel = parse_kernel(&release).unwrap_or((u32::MAX, 0));
        Machine { arch, seccomp_arch, kernel }
    }
}

/// Docker's `AF_ALG` and `AF_VSOCK`, the socket families its default profile keeps out of
/// containers (the kernel's crypto API, and sockets to the hypervisor).
const AF_ALG: u64 = 38;
const AF_VSOCK: u64 = 40;
/// The namespace flags of clone(2): `CLONE_NEWNS | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET |
/// NEWCGROUP`.
const CLONE_NAMESPACES: u64 = 0x0002_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000 | 0x0200_0000;
/// personality(2) values a program may set: `PER_LINUX`, `PER_LINUX32`, `UNAME26`,
/// `PER_LINUX32|UNAME26`, and the query `0xffffffff`.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];
const ENOSYS: u32 = 38;
const EPERM: u32 = 1;

/// The calls every container may make, whatever its capabilities.
const ALLOWED: &[&str] = &[
    "_llseek", "_newselect", "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat",
    "capget", "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64",
    "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat", "dup", "dup2",
    "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
    "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group",
    "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod",
    "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr",
    "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs",
    "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait",
    "futex_waitv", "futex_wake", "futimesat", "get_robust_list", "get_thread_area", "getcpu", "getcwd",
    "getdents", "getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
    "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority",
    "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit", "getrusage", "getsid",
    "getsockname", "getsockopt", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr", "getxattrat",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy",
    "io_getevents", "io_pgetevents", "io_pgetevents_time64", "io_setup", "io_submit", "ioctl", "ioprio_get",
    "ioprio_set", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
    "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen", "listmount", "listxattr", "listxattrat",
    "llistxattr", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise", "map_shadow_stack",
    "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock",
    "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr", "mq_notify", "mq_open",
    "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap",
    "mseal", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
    "name_to_handle_at", "nanosleep", "newfstatat", "open", "openat", "openat2", "pause", "pidfd_open",
    "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll",
    "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease", "pselect6",
    "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat",
    "readv", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr",
    "removexattrat", "rename", "renameat", "renameat2", "restart_syscall", "riscv_hwprobe", "rmdir", "rseq",
    "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop",
    "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto",
    "set_robust_list", "set_thread_area", "set_tid_address", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32",
    "setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid",
    "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit",
    "setsid", "setsockopt", "setuid", "setuid32", "setxattr", "setxattrat", "shmat", "shmctl", "shmdt",
    "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socketcall",
    "socketpair", "splice", "stat", "stat64", "statfs", "statfs64", "statmount", "statx", "symlink",
    "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
    "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times",
    "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "uretprobe",
    "utime", "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid",
    "write", "writev",
];

/// Calls allowed only with a capability in the bounding set (and the calls that need it).
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie",
            "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr", "mount", "mount_setattr", "move_mount",
            "open_tree", "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog",
            "umount", "umount2", "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    ("CAP_SYS_MODULE", &["delete_module", "init_module", "finit_module"]),
    ("CAP_SYS_PACCT", &["acct"]),
    ("CAP_SYS_PTRACE", &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"]),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    ("CAP_SYS_TIME", &["settimeofday", "stime", "clock_settime", "clock_settime64"]),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    ("CAP_SYS_NICE", &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Calls of one architecture family only (by Go's architecture names).
const BY_ARCH: &[(&[&str], &[&str])] = &[
    (&["ppc64le"], &["sync_file_range2", "swapcontext"]),
    (&["arm", "arm64"], &["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"]),
    (&["amd64", "x32"], &["arch_prctl"]),
    (&["amd64", "x32", "x86"], &["modify_ldt"]),
    (&["s390", "s390x"], &["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"]),
    (&["riscv64"], &["riscv_flush_icache"]),
];

impl Rule {
    fn new(names: &[&str], action: LinuxSeccompAction) -> Rule {
        Rule {
            names: names.iter().map(|n| n.to_string()).collect(),
            name: None,
            action,
            errno_ret: None,
            args: Vec::new(),
            comment: None,
            includes: Filter::default(),
            excludes: Filter::default(),
        }
    }

    fn allow(names: &[&str]) -> Rule {
        Rule::new(names, LinuxSeccompAction::ScmpActAllow)
    }

    /// Matches only when argument `index` compares to `value` (for `MaskedEq`: `arg & value == 0`).
    fn arg(mut self, index: usize, op: LinuxSeccompOperator, value: u64) -> Rule {
        let mut arg = LinuxSeccompArgBuilder::default().index(index).op(op).value(value);
        if op == LinuxSeccompOperator::ScmpCmpMaskedEq {
            arg = arg.value_two(0u64);
        }
        self.args.push(arg.build().expect("every field of an argument rule is set"));
        self
    }

    fn when(mut self, includes: Filter) -> Rule {
        self.includes = includes;
        self
    }

    fn unless(mut self, excludes: Filter) -> Rule {
        self.excludes = excludes;
        self
    }

    /// Whether the rule applies to a container with these capabilities on `machine`.
    fn applies(&self, bounding: &HashSet<Capability>, machine: &Machine) -> bool {
        let has = |cap: &String| parse_capability(cap).is_ok_and(|c| bounding.contains(&c));
        let (inc, exc) = (&self.includes, &self.excludes);
        let excluded = exc.arches.iter().any(|a| a == machine.arch)
            || exc.caps.iter().any(has)
            || exc.min_kernel.is_some_and(|v| machine.kernel >= v);
        let included = (inc.arches.is_empty() || inc.arches.iter().any(|a| a == machine.arch))
            && inc.caps.iter().all(has)
            && inc.min_kernel.is_none_or(|v| machine.kernel >= v);
        included && !excluded
    }
}

impl Profile {
    /// The profile Docker and Podman apply by default (see the module's doc).
    pub fn docker_default() -> Profile {
        use LinuxSeccompOperator::*;
        let mut rules = vec![
            Rule::allow(ALLOWED),
            Rule::allow(&["process_vm_readv", "process_vm_writev", "ptrace"])
                .when(Filter { min_kernel: Some((4, 8)), ..Filter::default() }),
            // socket(2) for every family but AF_ALG and AF_VSOCK.
            Rule::allow(&["socket"]).arg(0, ScmpCmpLt, AF_ALG),
            Rule::allow(&["socket"]).arg(0, ScmpCmpEq, AF_ALG + 1),
            Rule::allow(&["socket"]).arg(0, ScmpCmpGt, AF_VSOCK),
        ];
        rules.extend(PERSONALITIES.iter().map(|p| Rule::allow(&["personality"]).arg(0, ScmpCmpEq, *p)));
        rules.extend(BY_ARCH.iter().map(|(arches, names)| Rule::allow(names).when(Filter::arches(arches))));
        rules.extend(BY_CAPABILITY.iter().map(|(cap, names)| Rule::allow(names).when(Filter::caps(&[cap]))));
        // Without CAP_SYS_ADMIN: clone(2) without namespace flags (its first argument; the
        // second on s390), and clone3, whose flags the filter cannot see, as not implemented.
        let masked = |index| Rule::allow(&["clone"]).arg(index, ScmpCmpMaskedEq, CLONE_NAMESPACES);
        rules.push(masked(0).unless(Filter { caps: vec!["CAP_SYS_ADMIN".into()], arches: vec!["s390".into(), "s390x".into()], min_kernel: None }));
        rules.push(masked(1).when(Filter::arches(&["s390", "s390x"])).unless(Filter::caps(&["CAP_SYS_ADMIN"])));
        let mut clone3 = Rule::new(&["clone3"], LinuxSeccompAction::ScmpActErrno).unless(Filter::caps(&["CAP_SYS_ADMIN"]));
        clone3.errno_ret = Some(ENOSYS);
        rules.push(clone3);
        Profile {
            default_action: Some(LinuxSeccompAction::ScmpActErrno),
            default_errno_ret: Some(EPERM),
            architectures: Vec::new(),
            arch_map: vec![
                ArchGroup { architecture: Arch::ScmpArchX86_64, sub_architectures: vec![Arch::ScmpArchX86, Arch::ScmpArchX32] },
                ArchGroup { architecture: Arch::ScmpArchAarch64, sub_architectures: vec![Arch::ScmpArchArm] },
            ],
            flags: Vec::new(),
            listener_path: None,
            listener_metadata: None,
            syscalls: rules,
        }
    }

    /// A profile file's content (`source` names it in errors), checked as far as it can be
    /// before a container exists.
    pub fn parse(json: &str, source: &str) -> Result<Profile> {
        let bad = |reason: String| RunError::BadSeccompProfile { profile: source.to_string(), reason };
        let profile: Profile = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
        if !profile.architectures.is_empty() && !profile.arch_map.is_empty() {
            return Err(bad("it has both \"architectures\" and \"archMap\"; use one".into()));
        }
        if profile.default_action.is_none() && !profile.syscalls.is_empty() {
            return Err(bad("it has syscall rules but no \"defaultAction\"".into()));
        }
        for (i, rule) in profile.syscalls.iter().enumerate() {
            let which = || format!("rule {} ({})", i + 1, rule.name.clone().unwrap_or_else(|| rule.names.join(", ")));
            if rule.name.is_some() && !rule.names.is_empty() {
                return Err(bad(format!("{} has both \"name\" and \"names\"; use one", which())));
            }
            if rule.name.is_none() && rule.names.is_empty() {
                return Err(bad(format!("{} names no system call", which())));
            }
            if let Some(arg) = rule.args.iter().find(|a| a.index() > 5) {
                return Err(bad(format!("{} tests argument {}; system calls have 6 (0 to 5)", which(), arg.index())));
            }
        }
        Ok(profile)
    }

    /// The filter for a container with the `bounding` capabilities on `machine`: the rules
    /// whose conditions hold, and the architectures for the machine's. `None` when the profile
    /// filters nothing (no default action and no rules, as Docker reads an empty profile).
    pub fn resolve(&self, bounding: &HashSet<Capability>, machine: &Machine) -> Option<LinuxSeccomp> {
        let default_action = self.default_action?;
        let architectures = if !self.architectures.is_empty() {
            self.architectures.clone()
        } else {
            self.arch_map
                .iter()
                .find(|g| Some(g.architecture) == machine.seccomp_arch)
                .map(|g| std::iter::once(g.architecture).chain(g.sub_architectures.iter().copied()).collect())
                .unwrap_or_default()
        };
        let syscalls: Vec<LinuxSyscall> = self
            .syscalls
            .iter()
            .filter(|r| r.applies(bounding, machine))
            .map(|r| {
                let mut s = LinuxSyscall::default();
                s.set_names(r.name.clone().map_or_else(|| r.names.clone(), |n| vec![n]));
                s.set_action(r.action);
                s.set_errno_ret(r.errno_ret);
                s.set_args((!r.args.is_empty()).then(|| r.args.clone()));
                s
            })
            .collect();
        let mut seccomp = LinuxSeccomp::default();
        seccomp.set_default_action(default_action);
        seccomp.set_default_errno_ret(self.default_errno_ret);
        seccomp.set_architectures((!architectures.is_empty()).then_some(architectures));
        seccomp.set_flags((!self.flags.is_empty()).then(|| self.flags.clone()));
        seccomp.set_listener_path(self.listener_path.clone());
        seccomp.set_listener_metadata(self.listener_metadata.clone());
        seccomp.set_syscalls((!syscalls.is_empty()).then_some(syscalls));
        Some(seccomp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::bundle::capabilities;

    const AMD64: Machine = Machine { arch: "amd64", seccomp_arch: Some(Arch::ScmpArchX86_64), kernel: (6, 1) };
    const ARM64: Machine = Machine { arch: "arm64", seccomp_arch: Some(Arch::ScmpArchAarch64), kernel: (6, 1) };

    /// A resolved rule as (names, action, errno, args as (index, op, value)).
    type Flat = (Vec<String>, LinuxSeccompAction, Option<u32>, Vec<(usize, LinuxSeccompOperator, u64)>);

    fn rules(seccomp: &LinuxSeccomp) -> Vec<Flat> {
        seccomp
            .syscalls()
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|s| {
                let args = s.args().clone().unwrap_or_default().iter().map(|a| (a.index(), a.op(), a.value())).collect();
                (s.names().clone(), s.action(), s.errno_ret(), args)
            })
            .collect()
    }

    /// Calls allowed whatever their arguments.
    fn allowed(seccomp: &LinuxSeccomp) -> HashSet<String> {
        rules(seccomp)
            .into_iter()
            .filter(|(_, action, _, args)| *action == LinuxSeccompAction::ScmpActAllow && args.is_empty())
            .flat_map(|(names, ..)| names)
            .collect()
    }

    fn default_for(cap_drop: &[&str], machine: &Machine) -> LinuxSeccomp {
        let drop: Vec<String> = cap_drop.iter().map(|c| c.to_string()).collect();
        Profile::docker_default().resolve(&capabilities(&drop).unwrap(), machine).expect("a filter")
    }

    #[test]
    fn the_default_profile_denies_namespaces_mounts_and_kernel_interfaces() {
        let seccomp = default_for(&[], &AMD64);
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(seccomp.default_errno_ret(), Some(EPERM));
        assert_eq!(seccomp.architectures().as_deref(), Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..]));
        let allowed = allowed(&seccomp);
        for call in ["read", "write", "execve", "openat2", "fork", "vfork", "wait4"] {
            assert!(allowed.contains(call), "{call}");
        }
        // What a build needs that depends on the machine or the default capabilities.
        for call in ["arch_prctl", "modify_ldt", "ptrace", "chroot"] {
            assert!(allowed.contains(call), "{call}");
        }
        // What it must not have: namespaces, mounts, keyrings, modules, BPF, io_uring, time.
        for call in [
            "unshare", "setns", "mount", "umount2", "fsopen", "move_mount", "open_tree", "keyctl", "add_key", "request_key",
            "init_module", "finit_module", "kexec_load", "bpf", "perf_event_open", "io_uring_setup", "userfaultfd",
            "open_by_handle_at", "reboot", "settimeofday", "clock_settime", "syslog", "acct", "swapon", "pivot_root", "socket",
            "clone", "personality", "arm_sync_file_range",
        ] {
            assert!(!allowed.contains(call), "{call} is allowed");
        }
        let rules = rules(&seccomp);
        let of = |name: &str| rules.iter().filter(|r| r.0 == [name]).map(|r| (r.1, r.2, r.3.clone())).collect::<Vec<_>>();
        use LinuxSeccompOperator::*;
        let allow = LinuxSeccompAction::ScmpActAllow;
        assert_eq!(of("clone"), [(allow, None, vec![(0, ScmpCmpMaskedEq, 0x7E02_0000)])], "clone without namespace flags");
        assert_eq!(of("clone3"), [(LinuxSeccompAction::ScmpActErrno, Some(ENOSYS), vec![])]);
        assert_eq!(
            of("socket"),
            [(allow, None, vec![(0, ScmpCmpLt, 38)]), (allow, None, vec![(0, ScmpCmpEq, 39)]), (allow, None, vec![(0, ScmpCmpGt, 40)])],
            "every socket family but AF_ALG and AF_VSOCK"
        );
        assert_eq!(of("personality").len(), 5);
    }

    #[test]
    fn the_default_profile_follows_capabilities_architecture_and_kernel() {
        // CAP_SYS_ADMIN (never in Docker's default set, as here) would bring mount and namespaces.
        let with_admin: HashSet<Capability> = capabilities(&[]).unwrap().into_iter().chain([Capability::SysAdmin]).collect();
        let seccomp = Profile::docker_default().resolve(&with_admin, &AMD64).unwrap();
        let admin = allowed(&seccomp);
        assert!(["mount", "unshare", "setns", "clone", "clone3"].iter().all(|c| admin.contains(*c)), "{admin:?}");
        assert!(!rules(&seccomp).iter().any(|r| r.1 == LinuxSeccompAction::ScmpActErrno), "no clone3 ENOSYS with CAP_SYS_ADMIN");

        // --cap-drop takes the calls of the capability too.
        assert!(!allowed_for(&["SYS_CHROOT"], &AMD64).contains("chroot"));
        assert!(!allowed_for(&["ALL"], &AMD64).contains("chroot"));

        let arm = default_for(&[], &ARM64);
        assert_eq!(arm.architectures().as_deref(), Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..]));
        let on_arm = allowed(&arm);
        assert!(on_arm.contains("arm_sync_file_range") && on_arm.contains("set_tls"));
        assert!(!on_arm.contains("arch_prctl") && !on_arm.contains("modify_ldt"));

        let old = Machine { kernel: (4, 4), ..AMD64 };
        assert!(!allowed_for(&[], &old).contains("ptrace"), "ptrace only from Linux 4.8 on");
        // A machine without an archMap entry: the filter covers its native architecture only.
        let other = Machine { arch: "s390x", seccomp_arch: Some(Arch::ScmpArchS390x), kernel: (6, 1) };
        let s390 = default_for(&[], &other);
        assert_eq!(s390.architectures(), &None);
        let clone = rules(&s390).into_iter().find(|r| r.0 == ["clone"]).unwrap();
        assert_eq!(clone.3[0].0, 1, "s390 passes clone's flags second");
    }

    fn allowed_for(cap_drop: &[&str], machine: &Machine) -> HashSet<String> {
        allowed(&default_for(cap_drop, machine))
    }

    #[test]
    fn the_default_lists_are_consistent() {
        let mut sorted = ALLOWED.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, ALLOWED, "ALLOWED is sorted, each name once");
        for (cap, names) in BY_CAPABILITY {
            assert!(parse_capability(cap).is_ok(), "{cap}");
            for name in *names {
                assert!(!ALLOWED.contains(name), "{name} is in ALLOWED and also needs {cap}");
            }
        }
    }

    #[test]
    fn docker_format_profiles_parse_and_resolve() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": null},
                        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": [], "comment": "", "includes": {}, "excludes": {}},
                {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_KILL"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "7.0"}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]}
            ],
            "someFieldDockerIgnores": true
        }"#;
        let profile = Profile::parse(json, "p.json").unwrap();
        let seccomp = profile.resolve(&capabilities(&[]).unwrap(), &AMD64).unwrap();
        assert_eq!(seccomp.architectures().as_deref(), Some(&[Arch::ScmpArchX86_64][..]));
        let names: Vec<Vec<String>> = rules(&seccomp).into_iter().map(|r| r.0).collect();
        let expect: Vec<Vec<String>> = [vec!["read", "write"], vec!["mkdir"], vec!["arch_prctl"], vec!["personality"]]
            .iter()
            .map(|v| v.iter().map(|s| s.to_string()).collect())
            .collect();
        assert_eq!(names, expect, "mount needs CAP_SYS_ADMIN, kill is excluded by CAP_KILL, ptrace by the kernel");
        assert_eq!(rules(&seccomp)[1].2, Some(13));
        // What runc reads: the OCI form.
        let oci = serde_json::to_value(&seccomp).unwrap();
        assert_eq!(oci["syscalls"][3]["args"][0], serde_json::json!({"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}));

        assert_eq!(Profile::parse("{}", "empty.json").unwrap().resolve(&HashSet::new(), &AMD64), None, "an empty profile filters nothing");

        for (bad, says) in [
            ("not json", "expected"),
            (r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#, "SCMP_ACT_MAYBE"),
            (r#"{"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#, "no \"defaultAction\""),
            (r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]}"#, "both \"name\" and \"names\""),
            (r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]}"#, "names no system call"),
            (r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4"}}]}"#, "minKernel"),
            (r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#, "both \"architectures\" and \"archMap\""),
            (r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#, "argument 6"),
        ] {
            let err = Profile::parse(bad, "/etc/p.json").unwrap_err().to_string();
            assert!(err.starts_with("the seccomp profile /etc/p.json cannot be used: ") && err.contains(says), "{bad}: {err}");
        }
    }
}
