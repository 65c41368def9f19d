//! The kernel functions (kfuncs) the programs call, and how their calls are bound.
//!
//! Rust's BPF target cannot name a kernel function, so a kfunc call is written into
//! the program as its raw instruction (`call`, source register 2: a kfunc in the
//! kernel's BTF) with [`CALL_MARKER_IMM`] where the function's BTF id goes. Before
//! load the agent looks the function up in the running kernel's BTF and writes its
//! id over every marker ([`bind_calls`]); a kernel without it fails the load by name.
//!
//! Only `bpf_rdonly_cast` (Linux 6.2+) is called: it gives a pointer the verifier
//! knows only as a number a BTF struct type, so its fields are loaded directly (one
//! guarded instruction) instead of through `bpf_probe_read_kernel` (a helper call,
//! ~35 ns here). The verifier replaces the call with a register move.

/// The kfunc every marked call is bound to.
pub const CAST_KFUNC: &str = "bpf_rdonly_cast";

/// The immediate of an unbound call (`"WARR"`).
pub const CALL_MARKER_IMM: u32 = 0x5252_4157;

/// `BPF_JMP | BPF_CALL`.
const OP_CALL: u8 = 0x85;
/// `src_reg = BPF_PSEUDO_KFUNC_CALL`, `dst_reg = 0`.
const REGS_KFUNC: u8 = 0x20;

/// The whole unbound instruction as the little-endian `u64` the programs emit.
pub const CALL_MARKER_INSN: u64 = ((CALL_MARKER_IMM as u64) << 32) | ((REGS_KFUNC as u64) << 8) | OP_CALL as u64;

/// Writes `btf_id` into every unbound kfunc call in `object` (an ELF image);
/// returns how many it bound.
pub fn bind_calls(object: &mut [u8], btf_id: u32) -> usize {
    let marker = CALL_MARKER_INSN.to_le_bytes();
    let mut bound = 0;
    let mut at = 0;
    while at + 8 <= object.len() {
        if object[at..at + 8] == marker {
            object[at + 4..at + 8].copy_from_slice(&btf_id.to_le_bytes());
            bound += 1;
            at += 8;
        } else {
            at += 1;
        }
    }
    bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_every_marked_call_and_nothing_else() {
        let mut obj = [0u8; 40];
        obj[3..11].copy_from_slice(&CALL_MARKER_INSN.to_le_bytes());
        obj[24..32].copy_from_slice(&CALL_MARKER_INSN.to_le_bytes());
        // A call to a helper (source register 0) with the same immediate stays.
        obj[32] = OP_CALL;
        obj[36..40].copy_from_slice(&CALL_MARKER_IMM.to_le_bytes());
        let before = obj;
        assert_eq!(bind_calls(&mut obj, 0x0001_e240), 2);
        assert_eq!(&obj[3..11], &[0x85, 0x20, 0, 0, 0x40, 0xe2, 0x01, 0x00]);
        assert_eq!(&obj[24..32], &[0x85, 0x20, 0, 0, 0x40, 0xe2, 0x01, 0x00]);
        assert_eq!(obj[..3], before[..3]);
        assert_eq!(obj[11..24], before[11..24]);
        assert_eq!(obj[32..], before[32..]);
        assert_eq!(bind_calls(&mut obj, 7), 0, "a bound call is not bound again");
    }
}
