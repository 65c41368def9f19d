//! `sys_exit`: file opens, failed execs, socket calls, calls that change files
//! (`file_change`) and self-protection refusals of tagged tasks, seen as they return.
//!
//! A syscall hook costs every task on the host about 100 ns per syscall on this
//! kernel (docs/kernel.md §8), so the agent attaches this program only while at least one
//! session is live. Reading at exit gives the outcome: the resolved file for a
//! successful open, the assigned local port after connect or bind.
//!
//! Syscall numbers are x86_64's.

use aya_ebpf::{
    bindings::task_struct,
    helpers::generated::bpf_probe_read_user,
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use warrant_common::{
    EventHeader, EventKind, TaskTag,
    event::{FILE_OPEN_HEAD, NetEvent, VIOLATION_SYSCALL, ViolationEvent},
    policy::ACTION_DENY,
};

use warrant_common::syscalls::{WHEN_ALWAYS, WHEN_ARG_EQ, WHEN_ARG_HAS, WHEN_ARG_NONZERO, WHEN_NEVER};

use crate::{
    emit, file_change,
    kernel::{cast, fd_file, load, load_ptr, off, read},
    maps::{OPEN_RECORD, REFUSED_SYSCALLS},
    path, tag, tcp, unix_peer,
};

const NR_OPEN: u64 = 2;
const NR_CONNECT: u64 = 42;
const NR_SENDTO: u64 = 44;
const NR_SENDMSG: u64 = 46;
const NR_ACCEPT: u64 = 43;
const NR_BIND: u64 = 49;
const NR_LISTEN: u64 = 50;
const NR_CREAT: u64 = 85;
const NR_OPENAT: u64 = 257;
const NR_ACCEPT4: u64 = 288;
const NR_OPENAT2: u64 = 437;
const NR_EXECVE: u64 = 59;
const NR_EXECVEAT: u64 = 322;
// Signals Landlock's scope refuses (EPERM); the seccomp refusals come from the
// `REFUSED_SYSCALLS` map, filled from `warrant_common::syscalls::TABLE`.
const NR_KILL: u64 = 62;
const NR_RT_SIGQUEUEINFO: u64 = 129;
const NR_TKILL: u64 = 200;
const NR_TGKILL: u64 = 234;
const NR_RT_TGSIGQUEUEINFO: u64 = 297;
const NR_PIDFD_SEND_SIGNAL: u64 = 424;
const NR_CLONE3: u64 = 435;

/// `sendto`/`sendmsg` flag: connect and send in one call (TCP Fast Open).
const MSG_FASTOPEN: u64 = 0x2000_0000;

/// How a network call reached `sys_exit`.
#[derive(Clone, Copy)]
enum Via {
    /// connect, bind, listen, accept: the address, if any, is the second argument.
    Connect,
    /// A sendto/sendmsg with `MSG_FASTOPEN`: the address is at this user pointer.
    FastOpen(u64),
}

const EPERM: i64 = 1;
const EINPROGRESS: i64 = 115;
const SOCK_STREAM: u16 = 1;
const ENOENT: i64 = 2;
const ENOTDIR: i64 = 20;
const ENOSYS: i64 = 38;
/// `clone3` flag: start the child in another cgroup.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
/// `O_CREAT | O_WRONLY | O_TRUNC`, what creat(2) means.
const CREAT_FLAGS: u32 = 0o100 | 0o1 | 0o1000;

#[btf_tracepoint(function = "sys_exit")]
#[inline(always)]
pub fn sys_exit(ctx: BtfTracePointContext) -> u32 {
    let Some((task, tag)) = tag::current() else {
        return 0;
    };
    if tag::enforce(&tag) {
        return 0;
    }
    let regs: *const u8 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    let nr: u64 = load(regs, off!(regs_orig_ax));
    match nr {
        NR_OPEN | NR_CREAT | NR_OPENAT | NR_OPENAT2 => file_open(&tag, task, regs, nr, ret),
        NR_CONNECT => net(EventKind::Connect, &tag, task, regs, ret, Via::Connect),
        NR_BIND => net(EventKind::Bind, &tag, task, regs, ret, Via::Connect),
        NR_LISTEN => net(EventKind::Listen, &tag, task, regs, ret, Via::Connect),
        NR_ACCEPT | NR_ACCEPT4 => net(EventKind::Accept, &tag, task, regs, ret, Via::Connect),
        // TCP Fast Open: a sendto/sendmsg that connects (the cgroup connect hooks
        // decide it as they do a connect); the record is the connect's.
        NR_SENDTO if load::<u64>(regs, off!(regs_r10)) & MSG_FASTOPEN != 0 => {
            let uaddr = load::<u64>(regs, off!(regs_r8));
            net(EventKind::Connect, &tag, task, regs, ret, Via::FastOpen(uaddr));
        }
        NR_SENDMSG if load::<u64>(regs, off!(regs_dx)) & MSG_FASTOPEN != 0 => {
            // `msg_name` is the first field of the user's `struct msghdr`.
            let msg = load::<u64>(regs, off!(regs_si));
            let mut uaddr: u64 = 0;
            unsafe { bpf_probe_read_user((&raw mut uaddr).cast(), 8, msg as *const _) };
            net(EventKind::Connect, &tag, task, regs, ret, Via::FastOpen(uaddr));
        }
        NR_EXECVE | NR_EXECVEAT if ret < 0 && ret != -ENOENT && ret != -ENOTDIR && !was_refused(regs, nr, ret) => {
            exec_failed(&tag, task, regs, nr, ret);
        }
        NR_KILL | NR_TKILL | NR_TGKILL | NR_RT_SIGQUEUEINFO | NR_RT_TGSIGQUEUEINFO | NR_PIDFD_SEND_SIGNAL
            if ret == -EPERM =>
        {
            refused(&tag, task, regs, nr);
        }
        // glibc calls clone3 for every thread and falls back to clone on ENOSYS (what
        // seccomp answers), so only an attempt to start a child in another cgroup is news.
        NR_CLONE3 => {
            if ret == -ENOSYS && clone3_flags(regs) & CLONE_INTO_CGROUP != 0 {
                refused(&tag, task, regs, nr);
            }
        }
        _ if ret < 0 && ret > -4096 && was_refused(regs, nr, ret) => refused(&tag, task, regs, nr),
        _ if file_change::is_change(nr) => file_change::record(&tag, task, regs, nr, ret),
        _ => {}
    }
    0
}

/// Whether the session's seccomp filter is what failed this call: the syscall is in
/// `REFUSED_SYSCALLS`, the error is the one the filter answers, and the arguments
/// are the ones the filter refuses.
#[inline(always)]
fn was_refused(regs: *const u8, nr: u64, ret: i64) -> bool {
    let Some(r) = REFUSED_SYSCALLS.get(nr as u32) else {
        return false;
    };
    if r.when == WHEN_NEVER || ret != -i64::from(r.errno) {
        return false;
    }
    let arg = |i: u32| -> u64 {
        let off = match i {
            0 => off!(regs_di),
            1 => off!(regs_si),
            2 => off!(regs_dx),
            3 => off!(regs_r10),
            _ => off!(regs_r8),
        };
        read::<u64>(regs, off).unwrap_or(0)
    };
    match r.when {
        WHEN_ALWAYS => true,
        WHEN_ARG_NONZERO => arg(r.arg) != 0 || (r.values[0] != 0 && arg(r.values[0] as u32 - 1) != 0),
        WHEN_ARG_EQ => {
            let a = arg(r.arg);
            a == r.values[0] || (r.values[1] != 0 && a == r.values[1])
        }
        WHEN_ARG_HAS => arg(r.arg) & r.values[0] != 0,
        _ => false,
    }
}

/// The `flags` of the `struct clone_args` a clone3 call passed (its first u64).
#[inline(always)]
fn clone3_flags(regs: *const u8) -> u64 {
    let Some(args) = read::<u64>(regs, off!(regs_di)) else {
        return 0;
    };
    let mut flags: u64 = 0;
    let r = unsafe { bpf_probe_read_user((&raw mut flags).cast(), 8, args as *const _) };
    if r == 0 { flags } else { 0 }
}

/// A call self-protection refused: which one, and its first argument.
#[inline(always)]
fn refused(tag: &TaskTag, task: *mut task_struct, regs: *const u8, nr: u64) {
    let arg0 = load::<u64>(regs, off!(regs_di));
    let mut ev = ViolationEvent {
        header: EventHeader::default(),
        op: VIOLATION_SYSCALL,
        action: ACTION_DENY,
        ..ViolationEvent::default()
    };
    ev.addr[..8].copy_from_slice(&nr.to_ne_bytes());
    ev.addr[8..].copy_from_slice(&arg0.to_ne_bytes());
    unsafe { emit::header(&raw mut ev.header, EventKind::Violation, tag, task) };
    emit::output(&ev, EventKind::Violation, Some(tag));
}

/// A failed exec: the path the process asked for and the error.
#[inline(always)]
fn exec_failed(tag: &TaskTag, task: *mut task_struct, regs: *const u8, nr: u64, ret: i64) {
    let Some(ev) = OPEN_RECORD.get_ptr_mut(0) else { return };
    let path_reg = if nr == NR_EXECVE { off!(regs_di) } else { off!(regs_si) };
    let user_path = read::<u64>(regs, path_reg).unwrap_or(0);
    unsafe {
        emit::header(&raw mut (*ev).header, EventKind::ExecFailed, tag, task);
        (*ev).ret = ret as i32;
        (*ev).open_flags = 0;
        path::from_user(user_path as *const u8, &raw mut (*ev).path);
    }
    unsafe { send_open(ev, EventKind::ExecFailed, tag) };
}

/// Sends a `file_open`/`exec_failed` record built in `OPEN_RECORD`, cut after its path.
///
/// # Safety
/// `ev` must be `OPEN_RECORD`'s value, its path filled in.
#[inline(always)]
unsafe fn send_open(ev: *const warrant_common::event::FileOpenEvent, kind: EventKind, tag: &TaskTag) {
    let len = FILE_OPEN_HEAD + unsafe { (*ev).path.len } as usize;
    unsafe { emit::output_prefix(ev, len, kind, Some(tag)) };
}

#[inline(always)]
fn file_open(tag: &TaskTag, task: *mut task_struct, regs: *const u8, nr: u64, ret: i64) {
    let Some(ev) = OPEN_RECORD.get_ptr_mut(0) else { return };
    unsafe {
        emit::header(&raw mut (*ev).header, EventKind::FileOpen, tag, task);
        (*ev).ret = ret as i32;
    }
    let t = task.cast_const().cast::<u8>();
    let file = if ret >= 0 { fd_file(t, ret as u64) } else { None };
    match file {
        Some(file) => unsafe {
            (*ev).open_flags = path::resolve_open_file(file);
        },
        None => {
            // Failed (or raced with close): report what the process asked for.
            let (path_reg, flags) = match nr {
                NR_OPEN => (off!(regs_di), load::<u32>(regs, off!(regs_si))),
                NR_CREAT => (off!(regs_di), CREAT_FLAGS),
                NR_OPENAT => (off!(regs_si), load::<u32>(regs, off!(regs_dx))),
                // openat2: flags are the first u64 of the user's `struct open_how`.
                _ => (
                    off!(regs_si),
                    read::<u64>(regs, off!(regs_dx))
                        .and_then(|how| {
                            let mut v: u64 = 0;
                            let r = unsafe {
                                bpf_probe_read_user((&raw mut v).cast(), 8, how as *const _)
                            };
                            (r == 0).then_some(v as u32)
                        })
                        .unwrap_or(0),
                ),
            };
            let user_path = read::<u64>(regs, path_reg).unwrap_or(0);
            unsafe {
                (*ev).open_flags = flags;
                path::from_user(user_path as *const u8, &raw mut (*ev).path);
            }
        }
    }
    unsafe { send_open(ev, EventKind::FileOpen, tag) };
}

#[inline(always)]
fn net(kind: EventKind, tag: &TaskTag, task: *mut task_struct, regs: *const u8, ret: i64, via: Via) {
    if let Via::FastOpen(0) = via {
        return; // no address: a send on a connected socket, not a connect
    }
    let fd: u64 = if matches!(kind, EventKind::Accept) {
        if ret < 0 {
            return; // nothing accepted: not an event
        }
        ret as u64
    } else {
        read::<u64>(regs, off!(regs_di)).unwrap_or(u64::MAX)
    };
    let t = task.cast_const().cast::<u8>();
    let mut ev = NetEvent {
        header: EventHeader::default(),
        ret: ret as i32,
        ..NetEvent::default()
    };

    let mut sk_of_fd: *const u8 = core::ptr::null();
    // The socket behind the file (`private_data`, a `void *`) is cast to its BTF type,
    // so it and its `struct sock` load directly (no helper call per field).
    let sock = fd_file(t, fd)
        .and_then(|f| load_ptr(f, off!(file_private_data)))
        .map(|s| cast(s, off!(btf_socket)));
    if let Some(sock) = sock {
        ev.sock_type = load::<u16>(sock, off!(socket_type));
        if let Some(sk) = load_ptr(sock, off!(socket_sk)) {
            sk_of_fd = sk;
            // A stream socket this session connected or accepted: remember whose it
            // is, so its close reports the bytes (tcp.rs).
            let made = match kind {
                EventKind::Connect if matches!(via, Via::FastOpen(_)) => ret >= 0 || ret == -EINPROGRESS,
                EventKind::Connect => ret == 0 || ret == -EINPROGRESS,
                EventKind::Accept => true,
                _ => false,
            };
            if made && ev.sock_type == SOCK_STREAM {
                tcp::remember(sk as u64, tag);
            }
            ev.family = load::<u16>(sk, off!(sk_family));
            ev.local_port = load::<u16>(sk, off!(sk_num));
            ev.remote_port = u16::from_be(load::<u16>(sk, off!(sk_dport)));
            if ev.family == AF_INET {
                ev.local_addr[..4].copy_from_slice(&load::<u32>(sk, off!(sk_rcv_saddr)).to_ne_bytes());
                ev.remote_addr[..4].copy_from_slice(&load::<u32>(sk, off!(sk_daddr)).to_ne_bytes());
            } else if ev.family == AF_INET6 {
                let (l, r) = (off!(sk_v6_rcv_saddr), off!(sk_v6_daddr));
                ev.local_addr[..8].copy_from_slice(&load::<u64>(sk, l).to_ne_bytes());
                ev.local_addr[8..].copy_from_slice(&load::<u64>(sk, l + 8).to_ne_bytes());
                ev.remote_addr[..8].copy_from_slice(&load::<u64>(sk, r).to_ne_bytes());
                ev.remote_addr[8..].copy_from_slice(&load::<u64>(sk, r + 8).to_ne_bytes());
            }
        }
    }

    if let Via::FastOpen(_) = via
        && ev.sock_type != SOCK_STREAM
    {
        return; // MSG_FASTOPEN means nothing on other sockets
    }
    if ev.family == AF_UNIX {
        if matches!(kind, EventKind::Connect) {
            unix_peer::connected(tag, task, regs, ret, ev.sock_type, sk_of_fd);
        }
        return;
    }

    // connect and a failed bind: the address asked for is in the user's sockaddr,
    // which is right even when the socket has already been reset.
    let wants_user_addr = matches!(kind, EventKind::Connect) || (matches!(kind, EventKind::Bind) && ret < 0);
    if wants_user_addr {
        let uaddr = match via {
            Via::Connect => load::<u64>(regs, off!(regs_si)),
            Via::FastOpen(uaddr) => uaddr,
        };
        // sockaddr_in is 16 bytes and sockaddr_in6 28: read the common head first so
        // a short sockaddr at the end of a page is not a failed read.
        let mut sa = [0u8; 8];
        let r = unsafe { bpf_probe_read_user(sa.as_mut_ptr().cast(), 8, uaddr as *const _) };
        if r == 0 {
            let family = u16::from_ne_bytes([sa[0], sa[1]]);
            let port = u16::from_be_bytes([sa[2], sa[3]]);
            let mut addr = [0u8; 16];
            if family == AF_INET {
                addr[..4].copy_from_slice(&sa[4..8]);
            } else if family == AF_INET6 {
                let src = (uaddr + 8) as *const core::ffi::c_void;
                unsafe { bpf_probe_read_user(addr.as_mut_ptr().cast(), 16, src) };
            }
            if family == AF_INET || family == AF_INET6 {
                ev.family = family;
                if matches!(kind, EventKind::Connect) {
                    ev.remote_port = port;
                    ev.remote_addr = addr;
                } else {
                    ev.local_port = port;
                    ev.local_addr = addr;
                }
            }
        }
    }

    if ev.family != AF_INET && ev.family != AF_INET6 {
        return; // unix and other families are not network activity
    }
    unsafe { emit::header(&raw mut ev.header, kind, tag, task) };
    emit::output(&ev, kind, Some(tag));
}
