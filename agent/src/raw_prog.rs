//! Programs aya 0.14 cannot load: the cgroup `connect_unix` and `sendmsg_unix`
//! hooks (attach types 49 and 50, Linux 6.7+), which its section parser and
//! `CgroupSockAddrAttachType` do not know (docs/kernel.md §10).
//!
//! They are compiled into the same object under sections aya does parse
//! (`cgroup/connect4`, `cgroup/sendmsg4`) and that aya is never asked to load. Here
//! the object is parsed a second time with `aya-obj`, its map references relocated
//! to the descriptors of the maps aya already created (so both share every map,
//! the `OFFSETS` global included), its calls linked, and the two programs loaded
//! with `bpf(BPF_PROG_LOAD)` under the unix attach types, attached to the cgroup v2
//! root as links and pinned like every other hook.

use std::{
    collections::HashSet,
    ffi::CString,
    fs,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    path::Path,
};

use anyhow::{Context, Result, anyhow};
use aya::Ebpf;
use aya_obj::Object;

use crate::bpf_sys;

/// `BPF_PROG_TYPE_CGROUP_SOCK_ADDR`.
const PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
/// `BPF_CGROUP_UNIX_CONNECT`.
const ATTACH_UNIX_CONNECT: u32 = 49;
/// `BPF_CGROUP_UNIX_SENDMSG`.
const ATTACH_UNIX_SENDMSG: u32 = 50;

/// The unix hooks: program name in the object, and its attach type.
pub const UNIX_HOOKS: [(&str, u32); 2] = [("connect_unix", ATTACH_UNIX_CONNECT), ("sendmsg_unix", ATTACH_UNIX_SENDMSG)];

/// Loads every program of [`UNIX_HOOKS`] from `object`, sharing `ebpf`'s maps,
/// attaches each to `cgroup_root` and pins its link as `links_dir/<name>`. A link a
/// previous agent pinned there is replaced after the new one is attached: no gap.
pub fn attach_unix_hooks(ebpf: &Ebpf, object: &[u8], cgroup_root: BorrowedFd<'_>, links_dir: &Path) -> Result<()> {
    let mut obj = Object::parse(object).context("failed to parse warrant's eBPF object for the unix hooks")?;
    let mut fds = Vec::new();
    for name in obj.maps.keys() {
        let map = ebpf
            .map(name)
            .ok_or_else(|| anyhow!("the loaded eBPF object has no map {name} for the unix hooks"))?;
        let fd = map_fd(map).ok_or_else(|| anyhow!("map {name} has no descriptor"))?;
        fds.push((name.clone(), fd.as_raw_fd()));
    }
    let text_sections: HashSet<usize> = obj.functions.keys().map(|(section, _)| *section).collect();
    let maps = obj.maps.clone();
    obj.relocate_maps(
        fds.iter().filter_map(|(name, fd)| maps.get(name).map(|m| (name.as_str(), *fd, m))),
        &text_sections,
    )
    .map_err(|e| anyhow!("failed to relocate the unix hooks' map references: {e}"))?;
    obj.relocate_calls(&text_sections).map_err(|e| anyhow!("failed to link the unix hooks' calls: {e}"))?;

    for (name, attach_type) in UNIX_HOOKS {
        let prog = obj.programs.get(name).ok_or_else(|| anyhow!("eBPF object has no program {name}"))?;
        let func = obj
            .functions
            .get(&prog.function_key())
            .ok_or_else(|| anyhow!("eBPF object has no code for program {name}"))?;
        let insns: Vec<u64> = func
            .instructions
            .iter()
            // SAFETY: `bpf_insn` is 8 bytes of plain data.
            .map(|i| unsafe { std::ptr::from_ref(i).cast::<u64>().read_unaligned() })
            .collect();
        let license = CString::new(prog.license.as_bytes()).context("license")?;
        let fd = bpf_sys::prog_load(PROG_TYPE_CGROUP_SOCK_ADDR, attach_type, name, &insns, &license)
            .with_context(|| format!("the kernel refused cgroup program {name}"))?;
        let link = bpf_sys::link_create(fd.as_fd(), cgroup_root, attach_type)
            .with_context(|| format!("failed to attach {name} to the cgroup v2 root"))?;
        let pin = links_dir.join(name);
        if pin.exists() {
            fs::remove_file(&pin).with_context(|| format!("failed to remove stale pin {}", pin.display()))?;
        }
        let c = CString::new(pin.as_os_str().as_encoded_bytes()).context("pin path")?;
        bpf_sys::obj_pin(link.as_fd(), &c).with_context(|| format!("failed to pin link at {}", pin.display()))?;
        // The pin holds the link (and the link the program); our descriptors can go.
    }
    Ok(())
}

/// The descriptor of a map aya created.
fn map_fd(map: &aya::maps::Map) -> Option<BorrowedFd<'_>> {
    use aya::maps::Map as M;
    let data = match map {
        M::Array(d)
        | M::HashMap(d)
        | M::LpmTrie(d)
        | M::LruHashMap(d)
        | M::PerCpuArray(d)
        | M::PerCpuHashMap(d)
        | M::RingBuf(d)
        | M::Unsupported(d) => d,
        _ => return None,
    };
    Some(data.fd().as_fd())
}
