//! Destroying a session's TCP sockets (the `drop` action) with sock_diag
//! `SOCK_DESTROY`, the mechanism behind `ss -K`.
//!
//! The session's sockets are found by inode: every descriptor of its processes
//! that is a `socket:[N]`. A sock_diag dump maps inodes to the exact socket ids
//! (cookie included), and each matching socket is destroyed by id: the local side
//! gets ECONNABORTED, the peer a reset (docs/kernel.md §3). The destroy is by cookie, so
//! a socket that was closed and its id reused in between is never hit.

use std::{
    collections::HashSet,
    fs, io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const IPPROTO_TCP: u8 = 6;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

/// `struct inet_diag_sockid`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct SockId {
    sport: u16,
    dport: u16,
    src: [u32; 4],
    dst: [u32; 4],
    iface: u32,
    cookie: [u32; 2],
}

/// `struct inet_diag_req_v2`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ReqV2 {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: SockId,
}

/// `struct inet_diag_msg` (the part we read).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct DiagMsg {
    family: u8,
    state: u8,
    timer: u8,
    retrans: u8,
    id: SockId,
    expires: u32,
    rqueue: u32,
    wqueue: u32,
    uid: u32,
    inode: u32,
}

#[repr(C)]
struct Request {
    hdr: NlMsgHdr,
    req: ReqV2,
}

/// Socket inodes held open by `pids`.
pub fn socket_inodes(pids: &[u32]) -> HashSet<u32> {
    let mut out = HashSet::new();
    for pid in pids {
        let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for e in dir.flatten() {
            if let Ok(target) = fs::read_link(e.path())
                && let Some(n) = target.to_str().and_then(|t| t.strip_prefix("socket:[")).and_then(|t| t.strip_suffix(']'))
                && let Ok(inode) = n.parse()
            {
                out.insert(inode);
            }
        }
    }
    out
}

/// Destroys every TCP socket (IPv4 and IPv6) whose inode is in `inodes`; returns
/// how many were destroyed.
pub fn destroy(inodes: &HashSet<u32>) -> io::Result<u32> {
    if inodes.is_empty() {
        return Ok(0);
    }
    let sock = netlink()?;
    let mut destroyed = 0;
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        let found: Vec<DiagMsg> = dump(&sock, family)?.into_iter().filter(|m| inodes.contains(&m.inode)).collect();
        for m in found {
            if request(&sock, SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, m.family, m.id)?.is_ok() {
                destroyed += 1;
            }
        }
    }
    Ok(destroyed)
}

fn netlink() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); a non-negative result is a descriptor we own.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_SOCK_DIAG) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is fresh and valid.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn send(sock: &OwnedFd, kind: u16, flags: u16, family: u8, id: SockId) -> io::Result<()> {
    let msg = Request {
        hdr: NlMsgHdr { len: size_of::<Request>() as u32, kind, flags, seq: 1, pid: 0 },
        req: ReqV2 { family, protocol: IPPROTO_TCP, states: u32::MAX, id, ..ReqV2::default() },
    };
    // SAFETY: msg is a plain repr(C) value of the given length.
    let n = unsafe { libc::send(sock.as_raw_fd(), (&raw const msg).cast(), size_of::<Request>(), 0) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Reads netlink messages until DONE or an error; calls `each` for payloads.
fn receive(sock: &OwnedFd, mut each: impl FnMut(u16, &[u8])) -> io::Result<Option<i32>> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut off = 0usize;
        let n = n as usize;
        while off + size_of::<NlMsgHdr>() <= n {
            // SAFETY: bounds checked above; unaligned read of a plain struct.
            let hdr: NlMsgHdr = unsafe { buf.as_ptr().add(off).cast::<NlMsgHdr>().read_unaligned() };
            let len = hdr.len as usize;
            if len < size_of::<NlMsgHdr>() || off + len > n {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated netlink message"));
            }
            let payload = &buf[off + size_of::<NlMsgHdr>()..off + len];
            match hdr.kind {
                NLMSG_DONE => return Ok(None),
                NLMSG_ERROR => {
                    let code = payload.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    return Ok(Some(code));
                }
                k => each(k, payload),
            }
            off += (len + 3) & !3;
        }
    }
}

fn dump(sock: &OwnedFd, family: u8) -> io::Result<Vec<DiagMsg>> {
    send(sock, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, family, SockId::default())?;
    let mut out = Vec::new();
    let err = receive(sock, |_, payload| {
        if payload.len() >= size_of::<DiagMsg>() {
            // SAFETY: length checked; unaligned read of a plain struct.
            out.push(unsafe { payload.as_ptr().cast::<DiagMsg>().read_unaligned() });
        }
    })?;
    match err {
        Some(code) if code != 0 => Err(io::Error::from_raw_os_error(-code)),
        _ => Ok(out),
    }
}

/// Sends one request and waits for its ack; `Ok(Err)` is the kernel's refusal.
fn request(sock: &OwnedFd, kind: u16, flags: u16, family: u8, id: SockId) -> io::Result<Result<(), io::Error>> {
    send(sock, kind, flags, family, id)?;
    Ok(match receive(sock, |_, _| {})? {
        Some(0) | None => Ok(()),
        Some(code) => Err(io::Error::from_raw_os_error(-code)),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn layouts_match_the_kernel() {
        assert_eq!(size_of::<SockId>(), 48);
        assert_eq!(size_of::<ReqV2>(), 56);
        assert_eq!(size_of::<DiagMsg>(), 72);
    }

    /// Destroying a connected socket by inode resets the peer (needs root, as the
    /// agent does; the unit tests run as root in `cargo xtask test`).
    #[test]
    fn destroy_resets_the_peer() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut server, _) = l.accept().unwrap();
        let inodes = socket_inodes(&[std::process::id()]);
        // Our own listener and server side are in the set too; destroy just the client.
        let client_inode = {
            let fd = client.as_raw_fd();
            let t = fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
            t.to_str().unwrap().trim_start_matches("socket:[").trim_end_matches(']').parse::<u32>().unwrap()
        };
        assert!(inodes.contains(&client_inode));
        let n = destroy(&HashSet::from([client_inode])).unwrap();
        assert_eq!(n, 1);
        let mut b = [0u8; 1];
        let err = server.read(&mut b).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    }
}
