//! Output style, decided once: progress bars and colour only on a terminal that wants them.

use std::io::IsTerminal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Animated progress bars (stderr is a TTY and TERM is not dumb).
    pub bars: bool,
    pub color: bool,
    pub quiet: bool,
}

impl Style {
    pub fn detect(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style::from_facts(quiet, tty, dumb, no_color)
    }

    pub fn from_facts(quiet: bool, tty: bool, dumb: bool, no_color: bool) -> Self {
        Style { bars: tty && !dumb && !no_color && !quiet, color: tty && !dumb && !no_color, quiet }
    }

    pub fn paint(&self, text: &str, ok: bool) -> String {
        if self.color {
            let code = if ok { "32" } else { "31" };
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_bars_or_colour_off_a_terminal_or_when_asked() {
        assert!(Style::from_facts(false, true, false, false).bars);
        assert!(!Style::from_facts(false, false, false, false).bars, "piped, as under Skaffold");
        assert!(!Style::from_facts(false, true, true, false).color, "TERM=dumb");
        assert!(!Style::from_facts(false, true, false, true).bars, "NO_COLOR");
        assert_eq!(Style::from_facts(false, false, false, false).paint("ok", true), "ok");
    }
}
