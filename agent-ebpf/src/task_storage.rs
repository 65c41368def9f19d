//! A BTF-defined task-storage map. aya-ebpf ships socket and inode storage but not
//! task storage, so this mirrors its `SkStorage` layout (`BPF_F_NO_PREALLOC`,
//! `max_entries` 0, `int` key) for `BPF_MAP_TYPE_TASK_STORAGE`.
//!
//! Task storage lives in the `task_struct` itself: it is freed with the task, so a
//! reused PID can never see a previous owner's value.

use core::ptr;

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE, bpf_map_type, task_struct},
    helpers::generated::{bpf_task_storage_delete, bpf_task_storage_get},
};

/// Placeholder fields the loader reads through BTF; never dereferenced.
#[repr(C)]
pub struct TaskStorage<T> {
    r#type: *const [i32; bpf_map_type::BPF_MAP_TYPE_TASK_STORAGE as usize],
    key: *const i32,
    value: *const T,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; BPF_F_NO_PREALLOC as usize],
}

// SAFETY: the fields are placeholders patched by the loader; the kernel serialises
// access to the storage itself.
unsafe impl<T> Sync for TaskStorage<T> {}

impl<T> TaskStorage<T> {
    pub const fn new() -> Self {
        Self {
            r#type: ptr::null(),
            key: ptr::null(),
            value: ptr::null(),
            max_entries: ptr::null(),
            map_flags: ptr::null(),
        }
    }

    #[inline(always)]
    fn as_ptr(&self) -> *mut core::ffi::c_void {
        ptr::from_ref(self).cast_mut().cast()
    }

    /// The value stored on `task`, if any.
    ///
    /// # Safety
    /// `task` must be a trusted BTF task pointer (current task or a tracepoint argument).
    #[inline(always)]
    pub unsafe fn get(&self, task: *mut task_struct) -> Option<*mut T> {
        let p = unsafe { bpf_task_storage_get(self.as_ptr(), task, ptr::null_mut(), 0) };
        (!p.is_null()).then_some(p.cast())
    }

    /// Stores `init` on `task` unless it already has a value; returns the value.
    ///
    /// # Safety
    /// As for [`Self::get`].
    #[inline(always)]
    pub unsafe fn get_or_insert(&self, task: *mut task_struct, init: &T) -> Option<*mut T> {
        let p = unsafe {
            bpf_task_storage_get(
                self.as_ptr(),
                task,
                ptr::from_ref(init).cast_mut().cast(),
                u64::from(BPF_LOCAL_STORAGE_GET_F_CREATE),
            )
        };
        (!p.is_null()).then_some(p.cast())
    }

    /// Removes the value from `task`.
    ///
    /// # Safety
    /// As for [`Self::get`].
    #[inline(always)]
    pub unsafe fn delete(&self, task: *mut task_struct) {
        unsafe { bpf_task_storage_delete(self.as_ptr(), task) };
    }
}
