//! Byte counts of a session's TCP connections, from the kernel.
//!
//! `sys_exit` of a connect or accept by a tagged task records the socket's owner in
//! `TCP_SOCKETS` (keyed by the socket's kernel address). `inet_sock_set_state` fires
//! on every TCP state change on the host; when a socket reaches `TCP_CLOSE` and is in
//! the map, its `tcp_sock` counters (bytes acknowledged by the peer, bytes received)
//! become a `SocketClose` event and the entry goes. The close may run in softirq on
//! any task, so the owner comes from the map, not from `current`. Untagged sockets
//! cost one state comparison, plus one hash lookup when they close.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, generated::bpf_ktime_get_boot_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use warrant_common::{
    EventHeader, EventKind, TaskTag,
    event::SocketCloseEvent,
    maps::SockOwner,
};

use crate::{
    emit,
    kernel::{off, offsets_valid, read},
    maps::TCP_SOCKETS,
};

const TCP_CLOSE: i32 = 7;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Records that the current (tagged) task owns the TCP socket at `sk`.
#[inline(always)]
pub fn remember(sk: u64, tag: &TaskTag) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let owner = SockOwner {
        session_id: tag.session_id,
        grant_id: tag.grant_id,
        session_slot: tag.session_slot,
        _pad: 0,
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    let _ = TCP_SOCKETS.insert(sk, owner, 0);
}

#[btf_tracepoint(function = "inet_sock_set_state")]
#[inline(always)]
pub fn inet_sock_set_state(ctx: BtfTracePointContext) -> u32 {
    let newstate: i32 = ctx.arg(2);
    if newstate != TCP_CLOSE {
        return 0;
    }
    let sk: *const u8 = ctx.arg(0);
    let key = sk as u64;
    let Some(owner) = (unsafe { TCP_SOCKETS.get(key) }).copied() else {
        return 0;
    };
    let _ = TCP_SOCKETS.remove(key);
    if !offsets_valid() {
        return 0;
    }
    let mut ev = SocketCloseEvent {
        header: EventHeader {
            kind: EventKind::SocketClose as u32,
            flags: emit::slot_flags(owner.session_slot),
            ktime_ns: unsafe { bpf_ktime_get_boot_ns() },
            session_id: owner.session_id,
            grant_id: owner.grant_id,
            cgroup_id: 0,
            pid: owner.pid,
            tid: owner.tid,
            ppid: 0,
            uid: owner.uid,
            euid: owner.uid,
            gid: owner.gid,
            comm: owner.comm,
        },
        family: read::<u16>(sk, off!(sk_family)).unwrap_or(0),
        local_port: read::<u16>(sk, off!(sk_num)).unwrap_or(0),
        remote_port: u16::from_be(read::<u16>(sk, off!(sk_dport)).unwrap_or(0)),
        bytes_sent: read::<u64>(sk, off!(tcp_bytes_acked)).unwrap_or(0),
        bytes_received: read::<u64>(sk, off!(tcp_bytes_received)).unwrap_or(0),
        ..SocketCloseEvent::default()
    };
    if ev.family == AF_INET {
        ev.local_addr[..4].copy_from_slice(&read::<[u8; 4]>(sk, off!(sk_rcv_saddr)).unwrap_or([0; 4]));
        ev.remote_addr[..4].copy_from_slice(&read::<[u8; 4]>(sk, off!(sk_daddr)).unwrap_or([0; 4]));
    } else if ev.family == AF_INET6 {
        ev.local_addr = read::<[u8; 16]>(sk, off!(sk_v6_rcv_saddr)).unwrap_or([0; 16]);
        ev.remote_addr = read::<[u8; 16]>(sk, off!(sk_v6_daddr)).unwrap_or([0; 16]);
    }
    // Often in softirq, on no task of the session: a lost record is counted against
    // the owner's session, and no task is signalled.
    let tag = TaskTag {
        session_id: owner.session_id,
        grant_id: owner.grant_id,
        session_slot: owner.session_slot,
        ..TaskTag::default()
    };
    emit::output_no_signal(&ev, EventKind::SocketClose, &tag);
    0
}
