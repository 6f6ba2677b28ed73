//! The `crmctl` binary: everything lives in the library; see `crmctl::cli`.

fn main() -> std::process::ExitCode {
    crmctl::cli::main()
}
