//! The `crmctl` binary: everything lives in the library; see `crmctl::cli`.

// mimalloc instead of the system allocator: a plan of a 100,000-user tenant makes and
// frees millions of small strings; with glibc's allocator the no-change plan of the
// reference tenant took 0.48 s instead of 0.28 s (`cargo bench --bench scale`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    crmctl::alloc::keep_freed_memory();
    crmctl::cli::main()
}
