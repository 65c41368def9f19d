//! Kernel struct offsets, resolved at load time.
//!
//! Rust's BPF target emits no CO-RE relocations, and this kernel refuses the
//! trampolines that would give typed access for free. So the agent reads the running
//! kernel's BTF (`/sys/kernel/btf/vmlinux`), finds each field below, and sets this
//! struct as the read-only global `OFFSETS` before loading. The verifier sees the
//! values as constants; the same object then works on any kernel with BTF, and a
//! missing field fails the load with its name instead of reading garbage.

/// Bytes of a dentry's inline name store (`DNAME_INLINE_LEN` on 64-bit), NUL included.
pub const DENTRY_SHORT_NAME: usize = 40;

/// Byte offsets of the kernel fields the programs read, each named `<struct>_<field>`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_fs: u32,
    pub task_files: u32,
    pub task_mm: u32,
    pub task_cred: u32,
    pub task_exit_code: u32,
    /// `task_struct.bpf_storage`: NULL until a BPF program gives the task storage, so
    /// an untagged task is told apart with one load (`tag::lookup` in the eBPF crate).
    pub task_bpf_storage: u32,
    pub fs_pwd: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_parent: u32,
    pub dentry_name_ptr: u32,
    /// `dentry.d_name.len`, and the inline name store (`d_shortname`, `d_iname`
    /// before 6.14) that `d_name.name` points into for names shorter than
    /// [`DENTRY_SHORT_NAME`] bytes; 0 when the kernel has neither (the path walk
    /// then reads every name with a helper).
    pub dentry_name_len: u32,
    pub dentry_short_name: u32,
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,
    pub vfsmount_root: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub file_path: u32,
    pub file_flags: u32,
    pub file_private_data: u32,
    pub socket_sk: u32,
    pub socket_type: u32,
    pub sk_family: u32,
    /// `sock.sk_type` (`SOCK_STREAM`, `SOCK_DGRAM`, …) and `sock_common.skc_state`
    /// (`TCP_LISTEN` for a listening unix socket too).
    pub sk_type: u32,
    pub sk_state: u32,
    pub sk_daddr: u32,
    pub sk_rcv_saddr: u32,
    pub sk_dport: u32,
    pub sk_num: u32,
    pub sk_v6_daddr: u32,
    pub sk_v6_rcv_saddr: u32,
    /// `tcp_sock.bytes_acked`: payload bytes the peer acknowledged (sent).
    pub tcp_bytes_acked: u32,
    /// `tcp_sock.bytes_received`: payload bytes received in order.
    pub tcp_bytes_received: u32,
    pub cred_uid: u32,
    pub cred_euid: u32,
    pub cred_gid: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub bprm_file: u32,
    /// `linux_binprm.filename`: the path execve was given (kept when a `#!` script's
    /// interpreter takes over `file`).
    pub bprm_filename: u32,
    /// `linux_binprm.interp`: the same pointer as `filename` until a binary handler
    /// (the `#!` one, binfmt_misc) names an interpreter.
    pub bprm_interp: u32,
    pub regs_orig_ax: u32,
    pub regs_di: u32,
    pub regs_si: u32,
    pub regs_dx: u32,
    /// The fourth and fifth syscall arguments (x86_64 passes them in r10 and r8).
    pub regs_r10: u32,
    pub regs_r8: u32,
    /// `bpf_sock_addr_kern.uaddr` and `.uaddrlen`: the address a cgroup `sock_addr`
    /// program's context points at (the unix hooks read the socket name there).
    pub sock_addr_kern_uaddr: u32,
    pub sock_addr_kern_uaddrlen: u32,
    /// A connected unix socket's peer, the name the peer is bound to, and the
    /// pid the peer's credentials carry (`sock.sk_peer_pid` -> `pid.numbers[0].nr`).
    pub unix_sock_peer: u32,
    pub unix_sock_addr: u32,
    pub unix_address_len: u32,
    pub unix_address_name: u32,
    pub sock_peer_pid: u32,
    pub pid_numbers_nr: u32,
    /// An executed file's inode and its link count (0: a memfd or a deleted file).
    pub file_inode: u32,
    pub inode_nlink: u32,
    /// `io_kiocb.opcode`, `.flags`, `.cqe.fd` and `.cqe.user_data`: an io_uring
    /// request as `io_uring_submit_req` sees it. All zero on a kernel without
    /// io_uring (the agent then leaves that hook out).
    pub io_kiocb_opcode: u32,
    pub io_kiocb_flags: u32,
    pub io_kiocb_cqe_fd: u32,
    pub io_kiocb_cqe_user_data: u32,
    /// `task_struct.comm`, the command name (16 bytes), loaded directly rather than
    /// through `bpf_get_current_comm`.
    pub task_comm: u32,
    /// The task's cgroup v2 id, as `bpf_get_current_cgroup_id` reads it:
    /// `task_struct.cgroups` -> `css_set.dfl_cgrp` -> `cgroup.kn` -> `kernfs_node.id`,
    /// loaded directly (the helper call was ~10 ns of every event).
    pub task_cgroups: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    /// BTF type ids (not offsets) of `struct file`, `struct dentry` and `struct
    /// mount`, the types `bpf_rdonly_cast` gives pointers the verifier sees as
    /// numbers (see [`crate::kfunc`]), so the path walk loads their fields directly.
    pub btf_file: u32,
    pub btf_dentry: u32,
    pub btf_mount: u32,
    /// `struct socket`, what a socket file's `private_data` points to, and `struct
    /// unix_sock`, which begins with the `struct sock` of a unix socket.
    pub btf_socket: u32,
    pub btf_unix_sock: u32,
    /// `struct kiocb` and its `ki_filp` (a `struct file *`): a slot of `fdtable->fd`
    /// cast to a kiocb that would hold it there reads as a typed `struct file *`
    /// (see `kernel::fd_file` in the eBPF crate).
    pub btf_kiocb: u32,
    pub kiocb_ki_filp: u32,
    /// Nonzero once filled in; programs do nothing while it is zero, so an object
    /// loaded without offsets stays inert instead of reading wrong memory.
    pub valid: u32,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), only u32 fields, no padding.
unsafe impl aya::Pod for KernelOffsets {}
