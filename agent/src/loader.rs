//! Owns the loaded eBPF object: loads it with this kernel's offsets, pins maps and
//! links under the pin directory, attaches the always-on hooks, and attaches the
//! syscall hook only while a session is live.
//!
//! Maps are created through their pin paths, so an agent that restarts re-adopts
//! the tags, grants and sessions its predecessor left in the kernel instead of
//! orphaning tagged tasks. Links are pinned too: the hooks (and the in-kernel kill
//! check) keep running while no agent does.

use std::{
    fs,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow};
use aya_obj::btf::BtfKind;
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf},
    maps::LpmTrie,
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSock, CgroupSockAddr,
        links::{FdLink, PinnedLink},
    },
};
use warrant_common::{
    GrantState, KernelOffsets, SessionState, TaskTag, kfunc,
    maps::{self as names, LOST_KINDS, SessionLost, SessionTasks},
    policy::{self, NetKey, NetVerdict, PolicyState, UnixKey, UnixVerdict},
    syscalls::{self, Refusal},
};

/// The eBPF object built by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/warrant"));

/// The object with its kfunc calls bound to this kernel's BTF ids
/// (`warrant_common::kfunc`), in `u64`s so the ELF image keeps the alignment the
/// parser needs.
struct BoundObject(Vec<u64>, usize);

impl BoundObject {
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: the vector holds at least `self.1` initialized bytes.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.1) }
    }
}

/// Copies the object and binds its kfunc calls to `btf`'s id of
/// [`kfunc::CAST_KFUNC`]; a kernel without it cannot run the programs.
fn bind_kfuncs(btf: &Btf) -> Result<BoundObject> {
    let id = btf.id_by_type_name_kind(kfunc::CAST_KFUNC, BtfKind::Func).map_err(|e| {
        anyhow!(
            "the kernel's BTF has no function {} (Linux 6.2+), which warrant's eBPF programs call: {e}",
            kfunc::CAST_KFUNC
        )
    })?;
    let mut words = vec![0u64; OBJECT.len().div_ceil(8)];
    // SAFETY: the vector has at least OBJECT.len() bytes; u8 has no alignment.
    let bytes = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), OBJECT.len()) };
    bytes.copy_from_slice(OBJECT);
    if kfunc::bind_calls(bytes, id) == 0 {
        return Err(anyhow!("warrant's eBPF object has no {} call to bind; it was built from other sources", kfunc::CAST_KFUNC));
    }
    Ok(BoundObject(words, OBJECT.len()))
}

/// Always-on hooks: they fire on events, not on every syscall, so untagged tasks pay
/// nothing measurable (docs/kernel.md §8).
const ALWAYS_ON: [(&str, &str); 6] = [
    ("task_newtask", "task_newtask"),
    ("sched_process_exec", "sched_process_exec"),
    ("sched_process_exit", "sched_process_exit"),
    ("sched_switch", "sched_switch"),
    ("inet_sock_set_state", "inet_sock_set_state"),
    // Per socket wake-up; anything not unix returns after one load (unix_peer.rs).
    ("sk_data_ready", "sk_data_ready"),
];
/// Sessions' io_uring submissions: always on where the kernel has io_uring (it
/// fires per submission, so only io_uring users pay, one lookup when untagged).
const IO_URING: (&str, &str) = ("io_uring_submit_req", "io_uring_submit_req");
/// The syscall hook, attached only while sessions are live.
const SYS_EXIT: &str = "sys_exit";
/// Network policy hooks, attached to the cgroup v2 root so they see every task;
/// they fire on connect, bind and datagram sends only.
const CGROUP_HOOKS: [&str; 6] = ["connect4", "connect6", "sendmsg4", "sendmsg6", "bind4", "bind6"];
/// The socket-creation hook (raw and packet sockets of sessions), on the same root.
const SOCK_CREATE: &str = "sock_create";

/// The loaded object and the maps the agent writes.
pub struct Kernel {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    /// The sys_exit link while attached.
    sys_exit: Option<PinnedLink>,
    pub grants: Array<MapData, GrantState>,
    pub sessions: Array<MapData, SessionState>,
    pub lost: PerCpuArray<MapData, u64>,
    deaths: PerCpuArray<MapData, u32>,
    session_lost: PerCpuArray<MapData, SessionLost>,
    pub session_tasks: Array<MapData, SessionTasks>,
    pub policies: Array<MapData, PolicyState>,
    pub net_rules: LpmTrie<MapData, NetKey, NetVerdict>,
    pub unix_rules: LpmTrie<MapData, UnixKey, UnixVerdict>,
}

/// What the loader found and did, for the start-up log.
pub struct LoadReport {
    pub adopted_maps: bool,
}

impl Kernel {
    /// Loads the object with `offsets`, reusing maps pinned in `pin_dir`, and attaches
    /// the always-on hooks.
    pub fn load(
        pin_dir: &Path,
        offsets: &KernelOffsets,
        ring_bytes: u32,
        cgroup_mount: &Path,
    ) -> Result<(Self, LoadReport)> {
        if OBJECT.is_empty() {
            return Err(anyhow!(
                "this warrant-agent was built without its eBPF object (AYA_BUILD_SKIP was set)\n\nRebuild with `cargo xtask build`."
            ));
        }
        ensure_bpffs(pin_dir)?;
        let maps_dir = pin_dir.join("maps");
        let links_dir = pin_dir.join("links");
        for d in [&maps_dir, &links_dir] {
            fs::create_dir_all(d).with_context(|| format!("failed to create pin directory {}", d.display()))?;
        }
        let adopted_maps = maps_dir.join(names::TASK_TAGS).exists();
        let map_names = [
            names::TASK_TAGS,
            names::GRANTS,
            names::SESSIONS,
            names::EVENTS,
            names::LOST_EVENTS,
            names::SESSION_DEATHS,
            names::SESSION_LOST,
            names::SESSION_TASKS,
            names::RING_CHARGED,
            names::RING_READ,
            syscalls::REFUSED_SYSCALLS,
            policy::POLICIES,
            policy::NET_RULES,
            policy::UNIX_RULES,
        ];
        let pin_paths: Vec<PathBuf> = map_names.iter().map(|n| maps_dir.join(n)).collect();

        let btf = Btf::from_sys_fs().context("failed to read kernel BTF from /sys/kernel/btf/vmlinux")?;
        let object = bind_kfuncs(&btf)?;
        let object = object.as_bytes();
        let mut loader = EbpfLoader::new();
        loader
            .btf(Some(&btf))
            .allow_unsupported_maps()
            .override_global(names::OFFSETS_GLOBAL, offsets, true)
            .map_max_entries(names::EVENTS, ring_bytes);
        for (name, path) in map_names.iter().zip(&pin_paths) {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(object).map_err(|e| {
            anyhow!(e).context(format!(
                "failed to load warrant's eBPF object (pinned maps in {}); if an older agent left incompatible pins, remove them with `warrant-agent --uninstall`",
                maps_dir.display()
            ))
        })?;

        // Left out on a kernel without io_uring (no io_kiocb in its BTF).
        let uring = (offsets.io_kiocb_opcode != 0).then_some(IO_URING);
        for (prog, tp) in ALWAYS_ON.into_iter().chain(uring).chain([(SYS_EXIT, "sys_exit")]) {
            let p: &mut BtfTracePoint = ebpf
                .program_mut(prog)
                .ok_or_else(|| anyhow!("eBPF object has no program {prog}"))?
                .try_into()
                .with_context(|| format!("program {prog} is not a tp_btf program"))?;
            p.load(tp, &btf).with_context(|| format!("the kernel refused tp_btf program {prog}"))?;
        }
        for (prog, _) in ALWAYS_ON.into_iter().chain(uring) {
            let link = attach(&mut ebpf, prog)?;
            repin(link, &links_dir.join(prog))?;
        }
        let root = fs::File::open(cgroup_mount)
            .with_context(|| format!("failed to open the cgroup v2 root {}", cgroup_mount.display()))?;
        for prog in CGROUP_HOOKS {
            let p: &mut CgroupSockAddr = ebpf
                .program_mut(prog)
                .ok_or_else(|| anyhow!("eBPF object has no program {prog}"))?
                .try_into()
                .with_context(|| format!("program {prog} is not a cgroup sock_addr program"))?;
            p.load().with_context(|| format!("the kernel refused cgroup program {prog}"))?;
            // A cgroup *link* always coexists with other programs on the cgroup;
            // bpf_link_create refuses any mode flag (EINVAL), so pass none.
            let id = p
                .attach(&root, CgroupAttachMode::Single)
                .with_context(|| format!("failed to attach {prog} to {}", cgroup_mount.display()))?;
            let link = FdLink::try_from(p.take_link(id)?).map_err(|e| anyhow!("link of {prog}: {e}"))?;
            repin(link, &links_dir.join(prog))?;
        }

        {
            let p: &mut CgroupSock = ebpf
                .program_mut(SOCK_CREATE)
                .ok_or_else(|| anyhow!("eBPF object has no program {SOCK_CREATE}"))?
                .try_into()
                .with_context(|| format!("program {SOCK_CREATE} is not a cgroup sock program"))?;
            p.load().with_context(|| format!("the kernel refused cgroup program {SOCK_CREATE}"))?;
            let id = p
                .attach(&root, CgroupAttachMode::Single)
                .with_context(|| format!("failed to attach {SOCK_CREATE} to {}", cgroup_mount.display()))?;
            let link = FdLink::try_from(p.take_link(id)?).map_err(|e| anyhow!("link of {SOCK_CREATE}: {e}"))?;
            repin(link, &links_dir.join(SOCK_CREATE))?;
        }
        // aya parsed these two and never loads them; they go in under the unix attach types.
        crate::raw_prog::attach_unix_hooks(&ebpf, object, root.as_fd(), &links_dir)?;

        let grants = Array::try_from(take(&mut ebpf, names::GRANTS)?).context("map GRANTS")?;
        let sessions = Array::try_from(take(&mut ebpf, names::SESSIONS)?).context("map SESSIONS")?;
        let lost = PerCpuArray::try_from(take(&mut ebpf, names::LOST_EVENTS)?).context("map LOST_EVENTS")?;
        let deaths = PerCpuArray::try_from(take(&mut ebpf, names::SESSION_DEATHS)?).context("map SESSION_DEATHS")?;
        let session_lost =
            PerCpuArray::try_from(take(&mut ebpf, names::SESSION_LOST)?).context("map SESSION_LOST")?;
        let session_tasks = Array::try_from(take(&mut ebpf, names::SESSION_TASKS)?).context("map SESSION_TASKS")?;
        let mut refused: Array<MapData, Refusal> =
            Array::try_from(take(&mut ebpf, syscalls::REFUSED_SYSCALLS)?).context("map REFUSED_SYSCALLS")?;
        for row in &syscalls::TABLE {
            refused
                .set(row.nr, row.refusal, 0)
                .with_context(|| format!("failed to write {} into REFUSED_SYSCALLS", row.name))?;
        }
        let policies = Array::try_from(take(&mut ebpf, policy::POLICIES)?).context("map POLICIES")?;
        let net_rules = LpmTrie::try_from(take(&mut ebpf, policy::NET_RULES)?).context("map NET_RULES")?;
        let unix_rules = LpmTrie::try_from(take(&mut ebpf, policy::UNIX_RULES)?).context("map UNIX_RULES")?;
        let mut kernel = Self {
            ebpf,
            pin_dir: pin_dir.to_owned(),
            sys_exit: None,
            grants,
            sessions,
            lost,
            deaths,
            session_lost,
            session_tasks,
            policies,
            net_rules,
            unix_rules,
        };
        // A pinned sys_exit link from a previous agent keeps working until we decide.
        if links_dir.join(SYS_EXIT).exists() {
            kernel.set_syscall_hook(true)?;
        }
        Ok((kernel, LoadReport { adopted_maps }))
    }

    /// Processes of the session in `slot` that died after it was dead (all CPUs).
    pub fn session_deaths(&self, slot: u32) -> u32 {
        self.deaths.get(&slot, 0).map_or(0, |v| v.iter().sum())
    }

    /// Zeroes the death count of `slot` before a new session uses it.
    pub fn reset_session_deaths(&mut self, slot: u32) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| anyhow!("failed to count CPUs: {e}"))?;
        let zeros = aya::maps::PerCpuValues::try_from(vec![0u32; cpus]).context("per-CPU zeros")?;
        self.deaths.set(slot, zeros, 0).with_context(|| format!("failed to reset SESSION_DEATHS[{slot}]"))
    }

    /// The lost records of the session in `slot` by `EventKind` number, summed over
    /// CPUs (zeros when the map cannot be read).
    pub fn session_lost(&self, slot: u32) -> [u64; LOST_KINDS] {
        let mut sum = [0u64; LOST_KINDS];
        if let Ok(per_cpu) = self.session_lost.get(&slot, 0) {
            for v in per_cpu.iter() {
                for (s, n) in sum.iter_mut().zip(v.by_kind) {
                    *s += u64::from(n);
                }
            }
        }
        sum
    }

    /// Zeroes the lost counts of `slot` before a new session uses it.
    pub fn reset_session_lost(&mut self, slot: u32) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| anyhow!("failed to count CPUs: {e}"))?;
        let zeros = aya::maps::PerCpuValues::try_from(vec![SessionLost::default(); cpus]).context("per-CPU zeros")?;
        self.session_lost.set(slot, zeros, 0).with_context(|| format!("failed to reset SESSION_LOST[{slot}]"))
    }

    /// The ring buffer, taken once by the event reader.
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>> {
        RingBuf::try_from(take(&mut self.ebpf, names::EVENTS)?).context("map EVENTS")
    }

    /// What the event reader tells the kernel it has read of each session's records
    /// (`RING_READ`), taken once with the ring.
    pub fn take_ring_read(&mut self) -> Result<Array<MapData, u64>> {
        Array::try_from(take(&mut self.ebpf, names::RING_READ)?).context("map RING_READ")
    }

    /// The task-tag map, for tagging and looking up processes by pidfd. The handle
    /// owns a duplicate descriptor, so it can be used without the agent's lock.
    pub fn task_tags(&self) -> Result<TaskTags> {
        let map = self
            .ebpf
            .map(names::TASK_TAGS)
            .ok_or_else(|| anyhow!("eBPF object has no map {}", names::TASK_TAGS))?;
        let data = match map {
            aya::maps::Map::Unsupported(d) => d,
            other => return Err(anyhow!("map {} has unexpected type {other:?}", names::TASK_TAGS)),
        };
        let fd = data.fd().as_fd().try_clone_to_owned().context("failed to duplicate the TASK_TAGS descriptor")?;
        Ok(TaskTags { fd })
    }

    /// Replaces self-protection's unix socket entries with `entries`: the new ones
    /// first, then whatever an earlier agent (with other socket paths) left.
    pub fn set_unix_self_protection(&mut self, entries: &[crate::policy_maps::UnixEntry]) -> Result<()> {
        for e in entries {
            self.unix_rules
                .insert(&aya::maps::lpm_trie::Key::new(e.prefix_len, e.key), e.verdict, 0)
                .map_err(|err| anyhow!("failed to write self-protection's unix rules: {err}"))?;
        }
        let stale: Vec<_> = self
            .unix_rules
            .keys()
            .filter_map(Result::ok)
            .filter(|k| u32::from_be_bytes(k.data().policy) == policy::UNIX_SELF_SLOT)
            .filter(|k| !entries.iter().any(|e| e.prefix_len == k.prefix_len() && e.key == k.data()))
            .collect();
        for k in stale {
            let _ = self.unix_rules.remove(&k);
        }
        Ok(())
    }

    /// Attaches (and pins) or detaches the syscall hook.
    pub fn set_syscall_hook(&mut self, on: bool) -> Result<()> {
        let pin = self.pin_dir.join("links").join(SYS_EXIT);
        let t0 = std::time::Instant::now();
        if on && self.sys_exit.is_none() {
            let link = attach(&mut self.ebpf, SYS_EXIT)?;
            if pin.exists() {
                // A previous agent's link: ours is attached already, so no gap.
                fs::remove_file(&pin).with_context(|| format!("failed to remove stale pin {}", pin.display()))?;
            }
            let pinned = link.pin(&pin).map_err(|e| anyhow!("failed to pin link at {}: {e}", pin.display()))?;
            self.sys_exit = Some(pinned);
            tracing::info!(elapsed_us = t0.elapsed().as_micros() as u64, "syscall hook attached");
        } else if !on && let Some(pinned) = self.sys_exit.take() {
            // Removing the pin and dropping our fd detaches the program.
            let _ = fs::remove_file(&pin);
            drop(pinned);
            tracing::info!(elapsed_us = t0.elapsed().as_micros() as u64, "syscall hook detached");
        }
        Ok(())
    }
}

fn take(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map> {
    ebpf.take_map(name).ok_or_else(|| anyhow!("eBPF object has no map {name}"))
}

fn attach(ebpf: &mut Ebpf, prog: &str) -> Result<FdLink> {
    let p: &mut BtfTracePoint = ebpf
        .program_mut(prog)
        .ok_or_else(|| anyhow!("eBPF object has no program {prog}"))?
        .try_into()
        .with_context(|| format!("program {prog} is not a tp_btf program"))?;
    let id = p.attach().with_context(|| format!("failed to attach tp_btf program {prog}"))?;
    let link = p.take_link(id).with_context(|| format!("failed to take the link of {prog}"))?;
    Ok(FdLink::from(link))
}

/// Pins `link` at `path`, replacing (and so detaching) whatever a previous agent
/// pinned there. The new link is attached before the old one goes: no gap.
fn repin(link: FdLink, path: &Path) -> Result<()> {
    if path.exists() {
        fs::remove_file(path).with_context(|| format!("failed to remove stale pin {}", path.display()))?;
    }
    let pinned = link.pin(path).map_err(|e| anyhow!("failed to pin link at {}: {e}", path.display()))?;
    // The pin holds the link; our fd can go.
    drop(pinned);
    Ok(())
}

/// Removes every pin (a deliberate uninstall): hooks detach and maps are freed
/// once no program uses them.
pub fn uninstall(pin_dir: &Path) -> Result<()> {
    if !pin_dir.exists() {
        return Ok(());
    }
    fs::remove_dir_all(pin_dir).with_context(|| format!("failed to remove pins under {}", pin_dir.display()))
}

/// Mounts bpffs at /sys/fs/bpf if nothing is mounted there.
fn ensure_bpffs(pin_dir: &Path) -> Result<()> {
    let mounts = fs::read_to_string("/proc/mounts").context("failed to read /proc/mounts")?;
    let bpffs: Vec<&str> = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, mnt, ty) = (f.next()?, f.next()?, f.next()?);
            (ty == "bpf").then_some(mnt)
        })
        .collect();
    if bpffs.iter().any(|m| pin_dir.starts_with(m)) {
        return Ok(());
    }
    if !pin_dir.starts_with("/sys/fs/bpf") {
        return Err(anyhow!(
            "pin directory {} is not on a bpf filesystem\n\nUse a directory under /sys/fs/bpf.",
            pin_dir.display()
        ));
    }
    fs::create_dir_all("/sys/fs/bpf").ok();
    rustix::mount::mount("bpf", "/sys/fs/bpf", "bpf", rustix::mount::MountFlags::empty(), None)
        .context("failed to mount bpffs at /sys/fs/bpf")?;
    Ok(())
}

/// Task storage seen from user space: the key is a pidfd. A pidfd opened with
/// `PIDFD_THREAD` names one thread, so every thread of a process can be tagged.
#[derive(Debug)]
pub struct TaskTags {
    fd: OwnedFd,
}

impl TaskTags {
    /// Tags the task behind `pidfd`.
    pub fn set(&self, pidfd: BorrowedFd<'_>, tag: &TaskTag) -> std::io::Result<()> {
        let key: i32 = pidfd.as_raw_fd();
        crate::bpf_sys::map_update(self.fd.as_fd(), (&raw const key).cast(), (&raw const *tag).cast())
    }

    /// The tag of the task behind `pidfd`, if it has one.
    pub fn get(&self, pidfd: BorrowedFd<'_>) -> std::io::Result<Option<TaskTag>> {
        let key: i32 = pidfd.as_raw_fd();
        let mut tag = TaskTag::default();
        match crate::bpf_sys::map_lookup(self.fd.as_fd(), (&raw const key).cast(), (&raw mut tag).cast()) {
            Ok(()) => Ok(Some(tag)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
