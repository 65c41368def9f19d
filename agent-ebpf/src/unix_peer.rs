//! The other half of the unix hooks, at a tagged task's `connect` return
//! (`sys_exit`): every unix connect is recorded here with its outcome, the name the
//! kernel's peer is bound to and the pid in the peer's credentials; and that bound
//! name meets the same rules as the name passed.
//!
//! The cgroup hook (`unix_policy.rs`) decides on the name before the kernel looks it
//! up, so a symlink (or a bind mount) to a refused socket passes it. Here the peer
//! is known: if its own name is refused, the connect went around the rules, and the
//! process is killed before the call returns to it (`kill-session` rules end the
//! session), so it never writes a byte; the record says so (`UNIX_VIA_ALIAS`).

use aya_ebpf::{
    bindings::task_struct,
    helpers::generated::{bpf_probe_read_kernel, bpf_probe_read_user, bpf_send_signal},
};
use warrant_common::{
    EventKind, TaskTag,
    event::{UNIX_AT_EXIT, UNIX_OP_CONNECT, UNIX_PATH_MAX, UNIX_VIA_ALIAS, UnixEvent},
    policy::{ACTION_ALLOW, ACTION_KILL, ACTION_LOG},
};

use crate::{
    emit,
    kernel::{off, read, read_ptr},
    maps::{GRANTS, UNIX_SCRATCH},
    tag,
    unix_policy::{Verdict, clear_past, decide},
};

const EPERM: i64 = 1;
const SIGKILL: u32 = 9;
/// `sun_family` before `sun_path`.
const FAMILY_BYTES: u32 = 2;

/// A tagged task's unix `connect(fd, ...)` returned `ret`; `sk` is the socket.
#[inline(always)]
pub fn connected(tag: &TaskTag, task: *mut task_struct, regs: *const u8, ret: i64, sock_type: u16, sk: *const u8) {
    if ret == -EPERM {
        return; // refused by the cgroup hook, which recorded why
    }
    let Some(key) = UNIX_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let key = unsafe { &mut *key };
    let policy = GRANTS.get(tag.grant_slot).map_or(0, |g| g.policy_slot);

    let mut peer_len = 0u32;
    let mut peer_pid = 0u32;
    if ret == 0 {
        let addr = read_ptr(sk, off!(unix_sock_peer)).and_then(|peer| read_ptr(peer, off!(unix_sock_addr)));
        if let Some(addr) = addr {
            let len = read::<i32>(addr, off!(unix_address_len)).unwrap_or(0);
            let name = addr.wrapping_add(off!(unix_address_name) + FAMILY_BYTES as usize);
            let got = unsafe {
                bpf_probe_read_kernel(key.data.path.as_mut_ptr().cast(), UNIX_PATH_MAX as u32, name.cast())
            };
            if got == 0 && len > FAMILY_BYTES as i32 {
                let n = (len as u32) - FAMILY_BYTES;
                peer_len = if n > UNIX_PATH_MAX as u32 { UNIX_PATH_MAX as u32 } else { n };
            }
        }
        peer_pid = read_ptr(sk, off!(sock_peer_pid)).and_then(|p| read::<u32>(p, off!(pid_numbers_nr))).unwrap_or(0);
    }
    clear_past(&mut key.data, peer_len);

    let v = if peer_len > 0 && tag::standing(tag) == tag::Standing::Live {
        decide(key, peer_len, policy)
    } else {
        Verdict { action: ACTION_ALLOW, rule: 0, flags: 0 }
    };
    let mut flags = UNIX_AT_EXIT | v.flags;
    if v.action != ACTION_ALLOW {
        flags |= UNIX_VIA_ALIAS;
    }
    let peer_name = key.data.path.as_ptr();
    report(tag, task, regs, ret, sock_type, (peer_pid, peer_len, peer_name), &v, flags, policy);

    match v.action {
        ACTION_ALLOW | ACTION_LOG => {}
        action => {
            // The connect already happened: the process dies before it returns,
            // whatever refusing action the rule had (deny included).
            if let Some(t) = tag::current_mut() {
                tag::sentence(t, tag, ACTION_KILL);
                tag::sentence(t, tag, action);
            }
            unsafe { bpf_send_signal(SIGKILL) };
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn report(
    tag: &TaskTag,
    task: *mut task_struct,
    regs: *const u8,
    ret: i64,
    sock_type: u16,
    (peer_pid, peer_len, peer_name): (u32, u32, *const u8),
    v: &Verdict,
    flags: u32,
    policy: u32,
) {
    let Some(ev) = emit::reserve::<UnixEvent>(EventKind::UnixConnect, Some(tag)) else {
        return;
    };
    let uaddr = read::<u64>(regs, off!(regs_si)).unwrap_or(0);
    let addrlen = read::<u64>(regs, off!(regs_dx)).unwrap_or(0) as u32;
    let len = if addrlen > FAMILY_BYTES { addrlen - FAMILY_BYTES } else { 0 };
    unsafe {
        // For the record only (the decisions were made on the kernel's copies).
        if bpf_probe_read_user((&raw mut (*ev).path).cast(), UNIX_PATH_MAX as u32, (uaddr + 2) as *const _) != 0 {
            (*ev).path[0] = 0;
        }
        bpf_probe_read_kernel((&raw mut (*ev).peer).cast(), UNIX_PATH_MAX as u32, peer_name.cast());
        (*ev).op = UNIX_OP_CONNECT;
        (*ev).action = v.action;
        (*ev).rule = v.rule;
        (*ev).policy_slot = policy;
        (*ev).flags = flags;
        (*ev).len = if len > UNIX_PATH_MAX as u32 { UNIX_PATH_MAX as u32 } else { len };
        (*ev).sock_type = u32::from(sock_type);
        (*ev).ret = ret as i32;
        (*ev).peer_pid = peer_pid;
        (*ev).peer_len = peer_len;
        emit::header(&raw mut (*ev).header, EventKind::UnixConnect, tag, task);
    }
    emit::submit(ev);
}
