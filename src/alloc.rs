//! Settings of the allocator the `crmctl` binary (and its benchmarks) run on: mimalloc,
//! declared as `#[global_allocator]` in `main.rs`. The library never allocates through
//! anything else and works with any global allocator; these settings only apply when
//! mimalloc is the one.

/// `mi_option_purge_delay` in mimalloc.h (v3; the Rust bindings name no constant for it):
/// how long freed memory stays with the process before it is returned to the system, in
/// milliseconds; `-1`: never.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keep freed memory for the process instead of returning it to the system after a
/// second (mimalloc's default).
///
/// A command runs for seconds and then exits: returning memory saves nothing, and taking
/// it back costs a page fault (and the zeroing of a page) each time. Parsing a large YAML
/// file takes about 2 s and frees as much as it keeps; with the default, the plan that
/// follows faulted in some 650 more pages than after parsing the same tenant as JSON
/// (`cargo bench --bench scale`, fresh plan of the reference tenant), which was most of
/// the gap between the two.
pub fn keep_freed_memory() {
    // SAFETY: mi_option_set only stores the value of a known option; it is read when
    // memory is freed, and any value is valid for this option.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_is_set_to_never() {
        // SAFETY: reading an option's value.
        let get = || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        // mimalloc 3.3's default purge delay (1 s): the index names that option. If this
        // fails after an upgrade of libmimalloc-sys, check the index in mimalloc.h.
        assert_eq!(get(), 1000);
        super::keep_freed_memory();
        assert_eq!(get(), -1);
    }
}
