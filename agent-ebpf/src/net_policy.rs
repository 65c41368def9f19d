//! `cgroup/connect4`, `connect6`, `sendmsg4`, `sendmsg6`, `bind4`, `bind6` and
//! `sock_create` on the cgroup v2 root: a tagged task's connect, and each datagram it
//! sends to an address, is checked against its grant's network rules before any
//! packet leaves, each bind against its `bind` rules; its raw and packet sockets are
//! refused at `socket(2)`.
//!
//! Returning 0 makes connect(2) fail with EPERM: the SYN never goes out (unlike a
//! kill at sys_enter, which lets the connect complete, docs/kernel.md §4). These hooks
//! run on connect only, so untagged tasks pay one lookup per connect and nothing on
//! other syscalls.
//!
//! Actions beyond refusing are recorded for the other hooks and the agent: `kill`
//! marks the task's tag doomed (its next hook kills it), `kill-session` marks the
//! session dead in `SESSIONS` (every task of it dies at its next hook, and the
//! agent runs the tree kill when it sees the violation), `drop` leaves the socket
//! teardown to the agent.

use aya_ebpf::{
    bindings::{bpf_sock, bpf_sock_addr},
    macros::{cgroup_sock, cgroup_sock_addr},
    maps::lpm_trie::Key,
    programs::{SockAddrContext, SockContext},
};
use warrant_common::{
    EventHeader, EventKind, TaskTag,
    event::{
        NetEvent, RULE_GRANT_ENDED, VIOLATION_BIND, VIOLATION_CONNECT, VIOLATION_SENDMSG, VIOLATION_SOCKET, ViolationEvent,
    },
    maps::{DatagramPeer, STATE_ACTIVE},
    policy::{
        ACTION_ALLOW, ACTION_DENY, ACTION_LOG, BIND_SLOT_BIT, NetKey, PORT_RULES, POLICY_KEY_BITS,
        POLICY_RAW_SOCKETS,
    },
};

use crate::{
    emit,
    maps::{DATAGRAM_PEERS, GRANTS, NET_RULES, POLICIES},
    tag,
};

const ALLOW: i32 = 1;
const REFUSE: i32 = 0;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const AF_PACKET: u32 = 17;
const SOCK_RAW: u32 = 3;
const SOCK_DGRAM: u16 = 2;
const BPF_NOEXIST: u64 = 1;

#[cgroup_sock_addr(connect4)]
#[inline(always)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    check(&ctx, false, VIOLATION_CONNECT)
}

/// `bind(2)` of a local address and port: the policy's `bind` rules (no match
/// allows), and no new listener at all once the grant has expired under
/// `on_expiry: drop`.
#[cgroup_sock_addr(bind4)]
#[inline(always)]
pub fn bind4(ctx: SockAddrContext) -> i32 {
    check(&ctx, false, VIOLATION_BIND)
}

#[cgroup_sock_addr(bind6)]
#[inline(always)]
pub fn bind6(ctx: SockAddrContext) -> i32 {
    check(&ctx, true, VIOLATION_BIND)
}

#[cgroup_sock_addr(connect6)]
#[inline(always)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    check(&ctx, true, VIOLATION_CONNECT)
}

/// A datagram to an address (unconnected UDP): the same rules as a connect, so a
/// denied peer is not reachable by `sendto` either (DNS-style exfiltration included).
/// A connected UDP socket was checked at its connect.
#[cgroup_sock_addr(sendmsg4)]
#[inline(always)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    check(&ctx, false, VIOLATION_SENDMSG)
}

#[cgroup_sock_addr(sendmsg6)]
#[inline(always)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    check(&ctx, true, VIOLATION_SENDMSG)
}

/// `socket(2)` itself: a session may not make raw or packet sockets (which reach any
/// peer without a connect or a sendmsg the hooks above see) unless its policy says
/// `raw_sockets: allow`.
#[cgroup_sock(sock_create)]
#[inline(always)]
pub fn sock_create(ctx: SockContext) -> i32 {
    let Some(tag_ptr) = tag::current_mut() else {
        return ALLOW; // untagged: one lookup, nothing else
    };
    let tag = unsafe { *tag_ptr };
    let sk: &bpf_sock = unsafe { &*ctx.sock };
    let (family, ty, protocol) = (sk.family, sk.type_, sk.protocol);
    if ty != SOCK_RAW && family != AF_PACKET {
        return ALLOW;
    }
    let Some(grant) = GRANTS.get(tag.grant_slot) else {
        return REFUSE;
    };
    let allowed = grant.policy_slot != 0
        && POLICIES.get(grant.policy_slot).is_some_and(|p| p.flags & POLICY_RAW_SOCKETS != 0);
    if allowed && tag::alive(&tag) {
        return ALLOW;
    }
    let mut ev = ViolationEvent {
        header: EventHeader::default(),
        op: VIOLATION_SOCKET,
        action: ACTION_DENY,
        policy_slot: grant.policy_slot,
        family: family as u16,
        port: ty as u16,
        ..ViolationEvent::default()
    };
    ev.addr[..4].copy_from_slice(&protocol.to_ne_bytes());
    let task = unsafe { aya_ebpf::helpers::generated::bpf_get_current_task_btf() };
    unsafe { emit::header(&raw mut ev.header, EventKind::Violation, &tag, task) };
    emit::output_no_signal(&ev, EventKind::Violation, &tag);
    REFUSE
}

#[inline(always)]
fn check(ctx: &SockAddrContext, v6: bool, op: u32) -> i32 {
    let Some(tag_ptr) = tag::current_mut() else {
        return ALLOW; // untagged: one lookup, nothing else
    };
    let tag = unsafe { *tag_ptr };
    let verdict = decide(ctx, tag_ptr, &tag, v6, op);
    if verdict == ALLOW && op == VIOLATION_SENDMSG {
        first_datagram(ctx, &tag, v6);
    }
    verdict
}

/// A datagram the rules let through: recorded when it is the session's first to
/// its destination, counted otherwise.
#[inline(always)]
fn first_datagram(ctx: &SockAddrContext, tag: &TaskTag, v6: bool) {
    let (addr, port) = destination(ctx, v6);
    let key = DatagramPeer { session_id: tag.session_id, addr, port, _pad: [0; 6] };
    if let Some(n) = DATAGRAM_PEERS.get_ptr_mut(&key) {
        unsafe { *n += 1 };
        return;
    }
    // Two threads racing on a first datagram: only the insert that wins records it.
    if DATAGRAM_PEERS.insert(&key, &1, BPF_NOEXIST).is_err() {
        return;
    }
    let mut ev = NetEvent {
        header: EventHeader::default(),
        family: if v6 { AF_INET6 } else { AF_INET },
        remote_port: port,
        sock_type: SOCK_DGRAM,
        ..NetEvent::default()
    };
    if v6 {
        ev.remote_addr = addr;
    } else {
        ev.remote_addr[..4].copy_from_slice(&addr[12..16]);
    }
    let task = unsafe { aya_ebpf::helpers::generated::bpf_get_current_task_btf() };
    unsafe { emit::header(&raw mut ev.header, EventKind::Datagram, tag, task) };
    emit::output_no_signal(&ev, EventKind::Datagram, tag);
}

#[inline(always)]
fn decide(ctx: &SockAddrContext, tag_ptr: *mut TaskTag, tag: &TaskTag, v6: bool, op: u32) -> i32 {
    let tag = *tag;
    let Some(grant) = GRANTS.get(tag.grant_slot) else {
        return REFUSE;
    };
    match tag::standing(&tag) {
        tag::Standing::Live => {}
        // A dead grant connects nowhere; the task dies at its next hook.
        tag::Standing::Dead => return REFUSE,
        tag::Standing::CutOff => {
            report(ctx, &tag, v6, op, ACTION_DENY, RULE_GRANT_ENDED, grant.policy_slot);
            return REFUSE;
        }
    }
    let policy = grant.policy_slot;
    if policy == 0 || grant.state != STATE_ACTIVE {
        return ALLOW;
    }

    let (addr, port) = destination(ctx, v6);
    let bind = op == VIOLATION_BIND;
    let slot = if bind { policy | BIND_SLOT_BIT } else { policy };
    let key = Key::new(POLICY_KEY_BITS + 128, NetKey { policy: slot.to_be_bytes(), addr });

    let (action, rule) = match NET_RULES.get(&key) {
        Some(v) => {
            let mut decided = (v.action, v.rule);
            let n = v.n_ports as usize;
            for i in 0..PORT_RULES {
                if i >= n {
                    break;
                }
                let p = &v.ports[i];
                if port >= p.lo && port <= p.hi {
                    decided = (u32::from(p.action), u32::from(p.rule));
                    break;
                }
            }
            decided
        }
        // The policy's `default` is about connects; a bind no rule names is allowed.
        None if bind => (ACTION_ALLOW, 0),
        None => (POLICIES.get(policy).map_or(ACTION_ALLOW, |p| p.net_default), 0),
    };
    if action == ACTION_ALLOW {
        return ALLOW;
    }
    report(ctx, &tag, v6, op, action, rule, policy);

    if action == ACTION_LOG {
        return ALLOW;
    }
    tag::sentence(tag_ptr, &tag, action);
    REFUSE
}

/// The address and port connected to: IPv6 as is, IPv4 mapped into `::ffff:0:0/96`.
#[inline(always)]
fn destination(ctx: &SockAddrContext, v6: bool) -> ([u8; 16], u16) {
    let sa: &bpf_sock_addr = unsafe { &*ctx.sock_addr };
    let port = u16::from_be(sa.user_port as u16);
    let mut addr = [0u8; 16];
    if v6 {
        for (i, w) in sa.user_ip6.iter().enumerate() {
            addr[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
    } else {
        addr[10] = 0xff;
        addr[11] = 0xff;
        addr[12..16].copy_from_slice(&sa.user_ip4.to_ne_bytes());
    }
    (addr, port)
}

/// Emits the violation record for a refused (or logged) connect.
#[inline(always)]
fn report(ctx: &SockAddrContext, tag: &TaskTag, v6: bool, op: u32, action: u32, rule: u32, policy: u32) {
    let (addr, port) = destination(ctx, v6);
    let mut ev = ViolationEvent {
        header: EventHeader::default(),
        op,
        action,
        rule,
        policy_slot: policy,
        family: if v6 { AF_INET6 } else { AF_INET },
        port,
        _pad: 0,
        addr: [0; 16],
    };
    if v6 {
        ev.addr = addr;
    } else {
        ev.addr[..4].copy_from_slice(&addr[12..16]);
    }
    let task = unsafe { aya_ebpf::helpers::generated::bpf_get_current_task_btf() };
    unsafe { emit::header(&raw mut ev.header, EventKind::Violation, tag, task) };
    emit::output_no_signal(&ev, EventKind::Violation, tag);
}
