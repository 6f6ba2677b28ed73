//! Helpers shared by the commands.

use std::io::IsTerminal;

/// Colors only on a TTY, never with `NO_COLOR` (any non-empty value) or `--no-color`.
pub fn use_color(no_color_flag: bool) -> bool {
    if no_color_flag {
        return false;
    }
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    std::io::stdout().is_terminal()
}
