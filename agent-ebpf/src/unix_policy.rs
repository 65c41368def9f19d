//! The cgroup `connect_unix` and `sendmsg_unix` hooks (Linux 6.7+): a tagged task's
//! connect to a unix socket name, and each datagram it sends to one, meets
//! self-protection's table and its policy's `unix:` rules before the kernel looks
//! the name up. Returning 0 makes the call fail with EPERM; the peer never sees it.
//!
//! aya 0.14 knows neither attach type, so both programs sit in a `cgroup/connect4`
//! and a `cgroup/sendmsg4` section (which aya parses and never loads) and the agent
//! loads them itself with the unix attach types (`agent/src/raw_prog.rs`).
//!
//! The name is read from the kernel's copy of the address (`bpf_sock_addr_kern`,
//! whose `uaddr` points at the `sockaddr_storage` the syscall copied in), so a
//! thread that rewrites the user buffer after the check changes nothing. What the
//! hook cannot see is where the kernel will resolve a name: a relative name or one
//! with `//`, `/./` or `/../` is refused to sessions outright; a symlink the session
//! can follow to a protected socket is not seen (docs/kernel.md §10).
//!
//! Decision, for a session of policy slot P:
//! 1. self-protection's longest match, if it is a hard entry (the agent's sockets):
//!    refused, whatever P says;
//! 2. else P's longest `unix:` match decides;
//! 3. else a self-protection default (a known process spawner) refuses;
//! 4. else the connect is allowed.
//!
//! Every connect is recorded (one `UnixEvent`); a datagram only when refused or logged.

use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::generated::{bpf_get_current_task_btf, bpf_probe_read_kernel},
    macros::cgroup_sock_addr,
    maps::lpm_trie::Key,
    programs::SockAddrContext,
};
use warrant_common::{
    EventKind, TaskTag,
    event::{
        RULE_GRANT_ENDED, UNIX_ABSTRACT, UNIX_NOT_CANONICAL, UNIX_OP_CONNECT, UNIX_OP_SENDMSG, UNIX_PATH_MAX,
        UNIX_SELF_PROTECTION, UnixEvent,
    },
    policy::{
        ACTION_ALLOW, ACTION_DENY, ACTION_LOG, POLICY_KEY_BITS,
        UNIX_RULE_HARD, UNIX_SELF_SLOT, UnixKey,
    },
};

use crate::{
    emit,
    kernel::{off, offsets_valid, read, read_ptr},
    maps::{GRANTS, UNIX_RULES},
    tag,
};

const ALLOW: i32 = 1;
const REFUSE: i32 = 0;
static ALLOWED: i32 = ALLOW;
/// `sun_family` before `sun_path`.
const FAMILY_BYTES: u32 = 2;

#[cgroup_sock_addr(connect4)]
#[inline(always)]
pub fn connect_unix(ctx: SockAddrContext) -> i32 {
    check(&ctx, UNIX_OP_CONNECT)
}

#[cgroup_sock_addr(sendmsg4)]
#[inline(always)]
pub fn sendmsg_unix(ctx: SockAddrContext) -> i32 {
    check(&ctx, UNIX_OP_SENDMSG)
}

/// What decided, before the action is taken.
pub(crate) struct Verdict {
    pub action: u32,
    pub rule: u32,
    pub flags: u32,
}

#[inline(always)]
fn check(ctx: &SockAddrContext, op: u32) -> i32 {
    let Some(tag_ptr) = tag::current_mut() else {
        return ALLOW; // untagged: one lookup, nothing else
    };
    if !offsets_valid() {
        return ALLOW;
    }
    let tag = unsafe { *tag_ptr };
    let Some(grant) = GRANTS.get(tag.grant_slot) else {
        return REFUSE;
    };
    let policy = grant.policy_slot;

    let standing = tag::standing(&tag);
    if standing == tag::Standing::Dead {
        return REFUSE; // the task dies at its next hook
    }
    let mut key = Key::new(0, UnixKey::default());
    let (len, mut flags) = read_name(ctx, &mut key.data);

    let v = if standing == tag::Standing::CutOff {
        Verdict { action: ACTION_DENY, rule: RULE_GRANT_ENDED, flags: 0 }
    } else if flags & UNIX_NOT_CANONICAL != 0 {
        Verdict { action: ACTION_DENY, rule: 0, flags: UNIX_SELF_PROTECTION }
    } else {
        decide(&mut key, len, policy)
    };
    flags |= v.flags;

    // An allowed connect is recorded at its return, with its outcome and peer
    // (`unix_peer.rs`); here only what a rule did not simply allow.
    if v.action != ACTION_ALLOW {
        report(ctx, &tag, &key.data, len, op, &v, flags, policy);
    }
    match v.action {
        // Read from memory: LLVM would otherwise return `action` itself where it
        // equals 1 (log), a value the verifier cannot bound to 0..=1.
        ACTION_ALLOW | ACTION_LOG => return unsafe { core::ptr::read_volatile(&ALLOWED) },
        action => tag::sentence(tag_ptr, &tag, action),
    }
    REFUSE
}

/// Copies `sun_path` from the kernel's copy of the address into `key.path` and
/// returns the address's name length (`addrlen` less `sun_family`), with
/// `UNIX_ABSTRACT` or `UNIX_NOT_CANONICAL`.
///
/// The trie is asked with that whole length. Bytes after a pathname's NUL cannot
/// make a rule match wrongly: pathname entries hold no NUL, so the NUL itself ends
/// every match (user space cuts the name there for the record). No loop here
/// depends on the name's length, so the verifier walks each once.
#[inline(always)]
fn read_name(ctx: &SockAddrContext, key: &mut UnixKey) -> (u32, u32) {
    let kern = ctx.sock_addr.cast_const().cast::<u8>();
    let (Some(uaddr), Some(addrlen)) =
        (read_ptr(kern, off!(sock_addr_kern_uaddr)), read::<u32>(kern, off!(sock_addr_kern_uaddrlen)))
    else {
        return (0, UNIX_NOT_CANONICAL);
    };
    // `uaddr` is the syscall's `sockaddr_storage` (128 bytes): reading the whole
    // sun_path is in bounds whatever the length.
    let got = unsafe {
        bpf_probe_read_kernel(
            key.path.as_mut_ptr().cast(),
            UNIX_PATH_MAX as u32,
            uaddr.wrapping_add(FAMILY_BYTES as usize).cast(),
        )
    };
    if got != 0 || addrlen <= FAMILY_BYTES {
        return (0, UNIX_NOT_CANONICAL);
    }
    let n = addrlen - FAMILY_BYTES;
    let n = if n > UNIX_PATH_MAX as u32 { UNIX_PATH_MAX as u32 } else { n };
    if key.path[0] == 0 {
        return (n, UNIX_ABSTRACT);
    }
    let ok = canonical(key, n);
    (n, if ok { 0 } else { UNIX_NOT_CANONICAL })
}

/// Whether the pathname in `key.path` (ending at its first NUL or at `n`) is
/// absolute with no empty, `.` or `..` component. Clears the bytes from `n` on.
///
/// Written for the verifier, which walks every path through a loop separately: no
/// branch at all. The bytes past `n` are cleared by arithmetic, and the form is
/// judged by a small automaton whose class and transition tables are read-only
/// globals, so each of the 108 steps is two loads and no jump.
#[inline(always)]
fn canonical(key: &mut UnixKey, n: u32) -> bool {
    clear_past(key, n);
    let mut state = ST_START;
    for i in 0..UNIX_PATH_MAX {
        state = step(state, key.path[i]);
    }
    // A name of all 108 bytes ends there.
    step(state, 0) == ST_OK
}

/// Zeroes `key.path[n..]`, without a branch on `n` (see [`KEEP`]).
#[inline(always)]
pub(crate) fn clear_past(key: &mut UnixKey, n: u32) {
    for i in 0..UNIX_PATH_MAX {
        // 0xff while i < n, else 0: `n - i` is 1..=108 exactly then (mod 256).
        let keep = unsafe { core::ptr::read_volatile(KEEP.as_ptr().add((n.wrapping_sub(i as u32) & 0xff) as usize)) };
        key.path[i] &= keep;
    }
}

/// `KEEP[(n - i) mod 256]`: 0xff when byte `i` is inside a name of `n` bytes.
/// (A comparison would become a branch on `n`, and the verifier would walk
/// the automaton once per possible length.)
static KEEP: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut d = 1;
    while d <= UNIX_PATH_MAX {
        t[d] = 0xff;
        d += 1;
    }
    t
};

/// Automaton states (see [`TRANSITIONS`]).
const ST_START: u8 = 0;
const ST_OK: u8 = 6;

/// Byte classes: 0 NUL, 1 `/`, 2 `.`, 3 anything else.
static BYTE_CLASS: [u8; 256] = {
    let mut t = [3u8; 256];
    t[0] = 0;
    t[b'/' as usize] = 1;
    t[b'.' as usize] = 2;
    t
};

/// `TRANSITIONS[state * 4 + class]`. States: 0 start, 1 after `/`, 2 after `/.`,
/// 3 after `/..`, 4 in a name, 5 bad (sink), 6 ended well (sink), 7 unused.
static TRANSITIONS: [u8; 32] = [
    // NUL  /  .  other
    5, 1, 5, 5, // start: must begin with /
    5, 5, 2, 4, // after /: "//" or a trailing / are bad
    5, 5, 3, 4, // after /.: "/." and "/./" are bad; ".x" is a name
    5, 5, 4, 4, // after /..: "/.." and "/../" are bad; "..." is a name
    6, 1, 4, 4, // in a name: NUL ends it well
    5, 5, 5, 5, // bad
    6, 6, 6, 6, // ended well
    5, 5, 5, 5, // unused
];

/// One automaton step: two table loads, no branch.
#[inline(always)]
fn step(state: u8, byte: u8) -> u8 {
    unsafe {
        let class = core::ptr::read_volatile(BYTE_CLASS.as_ptr().add(byte as usize)) & 3;
        core::ptr::read_volatile(TRANSITIONS.as_ptr().add(((state & 7) * 4 + class) as usize))
    }
}

/// Self-protection's entries, then the policy's rules, for the name in `key` of
/// `len` bytes (see the module documentation).
#[inline(always)]
pub(crate) fn decide(key: &mut Key<UnixKey>, len: u32, policy: u32) -> Verdict {
    key.prefix_len = POLICY_KEY_BITS + len * 8;
    key.data.policy = UNIX_SELF_SLOT.to_be_bytes();
    // Every field set on both paths: an `Option` copy would leave its payload
    // undefined on `None`, and a spill of an undefined register fails the verifier.
    let (own, own_action, own_rule, own_hard) = match UNIX_RULES.get(&*key) {
        Some(v) => (true, v.action, v.rule, v.flags & UNIX_RULE_HARD != 0),
        None => (false, ACTION_ALLOW, 0, false),
    };
    if own_hard {
        return Verdict { action: own_action, rule: own_rule, flags: UNIX_SELF_PROTECTION };
    }
    if policy != 0 {
        key.data.policy = policy.to_be_bytes();
        if let Some(v) = UNIX_RULES.get(&*key) {
            return Verdict { action: v.action, rule: v.rule, flags: 0 };
        }
    }
    if own {
        Verdict { action: own_action, rule: own_rule, flags: UNIX_SELF_PROTECTION }
    } else {
        Verdict { action: ACTION_ALLOW, rule: 0, flags: 0 }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn report(ctx: &SockAddrContext, tag: &TaskTag, name: &UnixKey, len: u32, op: u32, v: &Verdict, flags: u32, policy: u32) {
    let Some(ev) = emit::reserve_no_signal::<UnixEvent>(EventKind::UnixConnect, tag) else {
        return;
    };
    let sa: &bpf_sock_addr = unsafe { &*ctx.sock_addr };
    unsafe {
        (*ev).op = op;
        (*ev).action = v.action;
        (*ev).rule = v.rule;
        (*ev).policy_slot = policy;
        (*ev).flags = flags;
        (*ev).len = len;
        // One helper copy: a 108-byte loop here would be walked once per state.
        bpf_probe_read_kernel(
            (&raw mut (*ev).path).cast(),
            UNIX_PATH_MAX as u32,
            name.path.as_ptr().cast(),
        );
        (*ev).sock_type = sa.type_;
        (*ev).ret = 0;
        (*ev).peer_pid = 0;
        (*ev).peer_len = 0;
        emit::header(&raw mut (*ev).header, EventKind::UnixConnect, tag, bpf_get_current_task_btf());
    }
    emit::submit(ev);
}
