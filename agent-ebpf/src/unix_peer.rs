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
//!
//! Two routes reach a peer with no connect return to check them: a datagram
//! (`sendto` names the socket per message; an unconnected datagram socket has no
//! peer to read afterwards), and a connect submitted through io_uring (under a
//! policy with `io_uring: allow`), which runs in an io-wq worker or inside
//! `io_uring_enter`. Both end in the kernel calling the receiving socket's
//! `sk_data_ready`, in the sender's context, once the data (or the connection) is
//! queued for it: [`sk_data_ready`] checks that socket's own bound name there. A
//! refused one gets the process killed before the call returns, so it sends
//! nothing more; a datagram that went around the rules has been delivered by then,
//! and the record says so (`UNIX_DELIVERED`).

use aya_ebpf::{
    bindings::task_struct,
    helpers::generated::{bpf_probe_read_kernel, bpf_probe_read_user, bpf_send_signal, bpf_task_pt_regs},
    macros::btf_tracepoint,
    maps::lpm_trie::Key,
    programs::BtfTracePointContext,
};
use warrant_common::{
    EventKind, TaskTag,
    event::{UNIX_AT_EXIT, UNIX_DELIVERED, UNIX_OP_CONNECT, UNIX_OP_SENDMSG, UNIX_PATH_MAX, UNIX_VIA_ALIAS, UnixEvent},
    policy::{ACTION_ALLOW, ACTION_KILL, ACTION_LOG, UnixKey},
};

use crate::{
    emit,
    kernel::{cast, load, load_ptr, off, read},
    maps::{GRANTS, UNIX_SCRATCH},
    tag,
    unix_policy::{Verdict, clear_past, decide},
};

const EPERM: i64 = 1;
const AF_UNIX: u16 = 1;
const SOCK_STREAM: u16 = 1;
const SOCK_DGRAM: u16 = 2;
const SOCK_SEQPACKET: u16 = 5;
/// `skc_state` of a listening socket (unix sockets use the TCP state names).
const TCP_LISTEN: u8 = 10;
const NR_CONNECT: u64 = 42;
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
    if ret == 0 && !sk.is_null() {
        if let Some(peer) = load_ptr(cast(sk, off!(btf_unix_sock)), off!(unix_sock_peer)) {
            peer_len = bound_name(peer, &mut key.data);
        }
        // `sk` is typed (`syscalls::net` loads it); `pid.numbers` is a flexible
        // array, whose first entry is read with a helper.
        peer_pid = load_ptr(sk, off!(sock_peer_pid)).and_then(|p| read::<u32>(p, off!(pid_numbers_nr))).unwrap_or(0);
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

/// The kernel queued data, or a connection, for the socket `sk` (arg 0), in the
/// sender's context. Fires for every socket on the host (TCP receives included), so
/// anything but a unix socket costs one load and a compare, an untagged sender one
/// task-storage lookup more.
#[btf_tracepoint(function = "sk_data_ready")]
#[inline(always)]
pub fn sk_data_ready(ctx: BtfTracePointContext) -> u32 {
    let sk: *const u8 = ctx.arg(0);
    if load::<u16>(sk, off!(sk_family)) != AF_UNIX {
        return 0;
    }
    let Some((task, tag)) = tag::current() else {
        return 0;
    };
    delivered(task, &tag, sk);
    0
}

/// A tagged task queued something for the unix socket `sk`: a datagram (every
/// one is checked, connected sockets included: a connect through io_uring had no
/// return to check), or a connection on a listener when it did not come from
/// `connect(2)` (that one is decided at its return, with the name it passed).
/// Writes on a connected stream are not checked again: their connect was.
#[inline(always)]
fn delivered(task: *mut task_struct, tag: &TaskTag, sk: *const u8) {
    let sock_type = load::<u16>(sk, off!(sk_type));
    let op = match sock_type {
        SOCK_DGRAM => UNIX_OP_SENDMSG,
        SOCK_STREAM | SOCK_SEQPACKET => {
            if load::<u8>(sk, off!(sk_state)) != TCP_LISTEN {
                return;
            }
            let regs = unsafe { bpf_task_pt_regs(task) } as *const u8;
            if regs.is_null() || load::<u64>(regs, off!(regs_orig_ax)) == NR_CONNECT {
                return;
            }
            UNIX_OP_CONNECT
        }
        _ => return,
    };
    if tag::standing(tag) != tag::Standing::Live {
        return; // the cgroup hooks refuse a cut-off or dead session's sends
    }
    let mut key = Key::new(0, UnixKey::default());
    let n = bound_name(sk, &mut key.data);
    if n == 0 {
        return; // unnamed (a socketpair): no name to decide on
    }
    clear_past(&mut key.data, n);
    let policy = GRANTS.get(tag.grant_slot).map_or(0, |g| g.policy_slot);
    let v = decide(&mut key, n, policy);
    // What the rules allow or only log was decided (and logged) on the name passed,
    // at the cgroup hook; here only a peer they refuse.
    if v.action == ACTION_ALLOW || v.action == ACTION_LOG {
        return;
    }
    if let Some(ev) = emit::reserve::<UnixEvent>(EventKind::UnixConnect, Some(tag)) {
        unsafe {
            (*ev).path[0] = 0;
            bpf_probe_read_kernel((&raw mut (*ev).peer).cast(), UNIX_PATH_MAX as u32, key.data.path.as_ptr().cast());
            (*ev).op = op;
            (*ev).action = v.action;
            (*ev).rule = v.rule;
            (*ev).policy_slot = policy;
            (*ev).flags = UNIX_AT_EXIT | UNIX_VIA_ALIAS | UNIX_DELIVERED | v.flags;
            (*ev).len = 0;
            (*ev).sock_type = u32::from(sock_type);
            (*ev).ret = 0;
            (*ev).peer_pid = 0;
            (*ev).peer_len = n;
            emit::header(&raw mut (*ev).header, EventKind::UnixConnect, tag, task);
        }
        emit::submit(ev);
    }
    if let Some(t) = tag::current_mut() {
        tag::sentence(t, tag, ACTION_KILL);
        tag::sentence(t, tag, v.action);
    }
    unsafe { bpf_send_signal(SIGKILL) };
}

/// The name the unix socket `usk` (a `unix_sock`) is bound to, read into
/// `key.path`; returns its length without `sun_family`, at most `UNIX_PATH_MAX`,
/// 0 for an unnamed socket or a failed read. `unix_sock` begins with the `sock`;
/// its `addr` is past what the verifier types a `sock` as, so the pointer is cast to
/// a `unix_sock` first and its fields loaded directly; the name's bytes take one
/// helper read.
#[inline(always)]
fn bound_name(usk: *const u8, key: &mut UnixKey) -> u32 {
    let Some(addr) = load_ptr(cast(usk, off!(btf_unix_sock)), off!(unix_sock_addr)) else {
        return 0;
    };
    let len = load::<i32>(addr, off!(unix_address_len));
    if len <= FAMILY_BYTES as i32 {
        return 0;
    }
    let name = addr.wrapping_add(off!(unix_address_name) + FAMILY_BYTES as usize);
    if unsafe { bpf_probe_read_kernel(key.path.as_mut_ptr().cast(), UNIX_PATH_MAX as u32, name.cast()) } != 0 {
        return 0;
    }
    let n = (len as u32) - FAMILY_BYTES;
    if n > UNIX_PATH_MAX as u32 { UNIX_PATH_MAX as u32 } else { n }
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
    let uaddr = load::<u64>(regs, off!(regs_si));
    let addrlen = load::<u64>(regs, off!(regs_dx)) as u32;
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
