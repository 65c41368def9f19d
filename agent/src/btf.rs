//! Resolves [`KernelOffsets`] from the running kernel's BTF.
//!
//! The eBPF programs read kernel structs at offsets given to them in a read-only
//! global (Rust's BPF target has no CO-RE). Looking every field up by name here means
//! the same object runs on any kernel with BTF, and a field that moved or vanished
//! fails the start with its name rather than producing wrong events.

use std::path::Path;

use btf_rs::{Btf, Type};
use warrant_common::KernelOffsets;

/// Why an offset could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read kernel BTF at {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: btf_rs::Error,
    },
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF: struct {strukt} has no field {field}")]
    NoField { strukt: String, field: String },
    #[error("kernel BTF: {0}")]
    Btf(#[from] btf_rs::Error),
}

/// The standard location of the kernel's BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Resolves every offset the programs need.
pub fn kernel_offsets(path: &Path) -> Result<KernelOffsets, Error> {
    let btf = Btf::from_file(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    let r = Resolver { btf: &btf };
    // A kernel built without io_uring has no io_kiocb: those offsets stay zero and
    // the loader leaves the submission hook out (sessions cannot use io_uring there).
    let uring = match r.named_struct("io_kiocb") {
        Ok(_) => [
            r.off("io_kiocb", "opcode")?,
            r.off("io_kiocb", "flags")?,
            r.off("io_kiocb", "cqe.fd")?,
            r.off("io_kiocb", "cqe.user_data")?,
        ],
        Err(Error::NoStruct(_)) => [0; 4],
        Err(e) => return Err(e),
    };
    Ok(KernelOffsets {
        task_real_parent: r.off("task_struct", "real_parent")?,
        task_tgid: r.off("task_struct", "tgid")?,
        task_fs: r.off("task_struct", "fs")?,
        task_files: r.off("task_struct", "files")?,
        task_mm: r.off("task_struct", "mm")?,
        task_cred: r.off("task_struct", "cred")?,
        task_exit_code: r.off("task_struct", "exit_code")?,
        task_bpf_storage: r.off("task_struct", "bpf_storage")?,
        fs_pwd: r.off("fs_struct", "pwd")?,
        path_mnt: r.off("path", "mnt")?,
        path_dentry: r.off("path", "dentry")?,
        dentry_parent: r.off("dentry", "d_parent")?,
        dentry_name_ptr: r.off("dentry", "d_name.name")?,
        dentry_name_len: r.off("dentry", "d_name.len")?,
        dentry_short_name: r.off("dentry", "d_shortname").or_else(|_| r.off("dentry", "d_iname")).unwrap_or(0),
        mount_mnt: r.off("mount", "mnt")?,
        mount_parent: r.off("mount", "mnt_parent")?,
        mount_mountpoint: r.off("mount", "mnt_mountpoint")?,
        vfsmount_root: r.off("vfsmount", "mnt_root")?,
        files_fdt: r.off("files_struct", "fdt")?,
        fdtable_max_fds: r.off("fdtable", "max_fds")?,
        fdtable_fd: r.off("fdtable", "fd")?,
        file_path: r.off("file", "f_path")?,
        file_flags: r.off("file", "f_flags")?,
        file_private_data: r.off("file", "private_data")?,
        socket_sk: r.off("socket", "sk")?,
        socket_type: r.off("socket", "type")?,
        sk_family: r.off("sock_common", "skc_family")?,
        sk_type: r.off("sock", "sk_type")?,
        sk_state: r.off("sock_common", "skc_state")?,
        sk_daddr: r.off("sock_common", "skc_daddr")?,
        sk_rcv_saddr: r.off("sock_common", "skc_rcv_saddr")?,
        sk_dport: r.off("sock_common", "skc_dport")?,
        sk_num: r.off("sock_common", "skc_num")?,
        sk_v6_daddr: r.off("sock_common", "skc_v6_daddr")?,
        sk_v6_rcv_saddr: r.off("sock_common", "skc_v6_rcv_saddr")?,
        tcp_bytes_acked: r.off("tcp_sock", "bytes_acked")?,
        tcp_bytes_received: r.off("tcp_sock", "bytes_received")?,
        cred_uid: r.off("cred", "uid")?,
        cred_euid: r.off("cred", "euid")?,
        cred_gid: r.off("cred", "gid")?,
        mm_arg_start: r.off("mm_struct", "arg_start")?,
        mm_arg_end: r.off("mm_struct", "arg_end")?,
        bprm_file: r.off("linux_binprm", "file")?,
        bprm_filename: r.off("linux_binprm", "filename")?,
        bprm_interp: r.off("linux_binprm", "interp")?,
        regs_orig_ax: r.off("pt_regs", "orig_ax")?,
        regs_di: r.off("pt_regs", "di")?,
        regs_si: r.off("pt_regs", "si")?,
        regs_dx: r.off("pt_regs", "dx")?,
        regs_r10: r.off("pt_regs", "r10")?,
        regs_r8: r.off("pt_regs", "r8")?,
        sock_addr_kern_uaddr: r.off("bpf_sock_addr_kern", "uaddr")?,
        sock_addr_kern_uaddrlen: r.off("bpf_sock_addr_kern", "uaddrlen")?,
        unix_sock_peer: r.off("unix_sock", "peer")?,
        unix_sock_addr: r.off("unix_sock", "addr")?,
        unix_address_len: r.off("unix_address", "len")?,
        unix_address_name: r.off("unix_address", "name")?,
        sock_peer_pid: r.off("sock", "sk_peer_pid")?,
        pid_numbers_nr: r.off("pid", "numbers")? + r.off("upid", "nr")?,
        file_inode: r.off("file", "f_inode")?,
        inode_nlink: r.off("inode", "__i_nlink")?,
        io_kiocb_opcode: uring[0],
        io_kiocb_flags: uring[1],
        io_kiocb_cqe_fd: uring[2],
        io_kiocb_cqe_user_data: uring[3],
        task_comm: r.off("task_struct", "comm")?,
        task_cgroups: r.off("task_struct", "cgroups")?,
        css_set_dfl_cgrp: r.off("css_set", "dfl_cgrp")?,
        cgroup_kn: r.off("cgroup", "kn")?,
        kernfs_node_id: r.off("kernfs_node", "id")?,
        btf_file: r.struct_id("file")?,
        btf_dentry: r.struct_id("dentry")?,
        btf_mount: r.struct_id("mount")?,
        btf_socket: r.struct_id("socket")?,
        btf_unix_sock: r.struct_id("unix_sock")?,
        btf_kiocb: r.struct_id("kiocb")?,
        kiocb_ki_filp: r.off("kiocb", "ki_filp")?,
        valid: 1,
    })
}

struct Resolver<'a> {
    btf: &'a Btf,
}

impl Resolver<'_> {
    /// Byte offset of a dotted field path (`"d_name.name"`) in `struct strukt`.
    fn off(&self, strukt: &str, field: &str) -> Result<u32, Error> {
        let mut ty = self.named_struct(strukt)?;
        let mut total_bits = 0u32;
        let mut parts = field.split('.').peekable();
        while let Some(part) = parts.next() {
            let (bits, member_ty) = self
                .find_member(&ty, part)?
                .ok_or_else(|| Error::NoField { strukt: strukt.to_owned(), field: field.to_owned() })?;
            total_bits += bits;
            if parts.peek().is_some() {
                ty = self.strip(member_ty)?;
            }
        }
        Ok(total_bits / 8)
    }

    /// The BTF id of `struct name` (the one with members, not a forward declaration).
    fn struct_id(&self, name: &str) -> Result<u32, Error> {
        for id in self.btf.resolve_ids_by_name(name).unwrap_or_default() {
            if matches!(self.btf.resolve_type_by_id(id)?, Type::Struct(s) if !s.members.is_empty()) {
                return Ok(id);
            }
        }
        Err(Error::NoStruct(name.to_owned()))
    }

    fn named_struct(&self, name: &str) -> Result<Type, Error> {
        self.btf
            .resolve_types_by_name(name)
            .unwrap_or_default()
            .into_iter()
            .find(|t| matches!(t, Type::Struct(s) if !s.members.is_empty()))
            .ok_or_else(|| Error::NoStruct(name.to_owned()))
    }

    /// Finds `name` among the members of `ty`, looking into anonymous structs and
    /// unions. Returns the member's bit offset and type.
    fn find_member(&self, ty: &Type, name: &str) -> Result<Option<(u32, Type)>, Error> {
        let members = match ty {
            Type::Struct(s) | Type::Union(s) => &s.members,
            _ => return Ok(None),
        };
        for m in members {
            let member_name = self.btf.resolve_name(m).unwrap_or_default();
            let member_ty = self.btf.resolve_chained_type(m)?;
            if member_name == name {
                return Ok(Some((m.bit_offset(), member_ty)));
            }
            if member_name.is_empty() {
                let inner = self.strip(member_ty)?;
                if let Some((bits, t)) = self.find_member(&inner, name)? {
                    return Ok(Some((m.bit_offset() + bits, t)));
                }
            }
        }
        Ok(None)
    }

    /// Skips typedefs and qualifiers down to the underlying type.
    fn strip(&self, mut ty: Type) -> Result<Type, Error> {
        for _ in 0..16 {
            match &ty {
                Type::Typedef(t) => ty = self.btf.resolve_chained_type(t)?,
                Type::Const(t) | Type::Volatile(t) | Type::Restrict(t) => {
                    ty = self.btf.resolve_chained_type(t)?;
                }
                Type::TypeTag(t) => ty = self.btf.resolve_chained_type(t)?,
                _ => break,
            }
        }
        Ok(ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field the programs read exists in this kernel's BTF, and a few
    /// well-known layouts come out where the kernel headers put them.
    #[test]
    fn resolves_this_kernels_offsets() {
        let off = kernel_offsets(Path::new(VMLINUX_BTF)).expect("offsets from this kernel's BTF");
        assert_eq!(off.valid, 1);
        assert_eq!(off.sk_family, 16, "sock_common.skc_family");
        assert_eq!(off.sk_state, 18, "sock_common.skc_state");
        assert_eq!(off.dentry_name_ptr % 8, 0, "qstr.name is a pointer");
        assert_eq!(off.dentry_name_len, off.dentry_name_ptr - 4, "qstr.len is the upper half of hash_len");
        assert_eq!(off.dentry_short_name, off.dentry_name_ptr + 16, "d_shortname follows d_name and d_inode");
        assert!(off.task_real_parent > 0 && off.task_tgid > 0);
        // io_kiocb opens with a 64-byte union (file / io_cmd_data); cqe.fd follows
        // user_data (u64) and res (s32) in io_cqe.
        assert_eq!(off.io_kiocb_opcode, 64, "io_kiocb.opcode");
        assert_eq!(off.io_kiocb_cqe_fd, off.io_kiocb_cqe_user_data + 12, "io_cqe.fd");
    }

    #[test]
    fn unknown_field_is_named() {
        let btf = Btf::from_file(VMLINUX_BTF).expect("kernel BTF");
        let r = Resolver { btf: &btf };
        let err = r.off("task_struct", "no_such_field").unwrap_err();
        assert_eq!(err.to_string(), "kernel BTF: struct task_struct has no field no_such_field");
    }
}
