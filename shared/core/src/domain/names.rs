//! Names people type and read (projects, label classes, members): one rule for how two names
//! compare and which characters a name may not hold.

/// The form names are compared in: trimmed and case-folded, so `Cat` and ` cat` are one name.
pub fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Whether two names are the same name under [`name_key`].
pub fn same_name(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// Characters that make a name display as something it is not: bidirectional embeddings,
/// overrides, isolates and marks (a "Trojan Source" name can show `dog` for a class named
/// `god`), and invisible characters that make two names look the same. Zero-width joiners
/// (U+200C, U+200D) stay allowed: scripts such as Persian and emoji sequences need them.
pub fn is_deceptive_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// Why a name is refused for the characters it holds, if it is: control characters and
/// [deceptive format characters](is_deceptive_format_char).
pub fn forbidden_characters(name: &str) -> Option<&'static str> {
    if name.chars().any(char::is_control) {
        Some("no control characters")
    } else if name.chars().any(is_deceptive_format_char) {
        Some("no bidirectional-override or invisible formatting characters")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_trimmed_and_case_insensitively() {
        assert!(same_name("Cat", "cat"));
        assert!(same_name(" Ann ", "ann"));
        assert!(!same_name("cat", "cats"));
        assert_eq!(name_key("  Straße "), "straße");
    }

    #[test]
    fn bidirectional_overrides_and_invisible_characters_are_refused() {
        for name in [
            "abc\u{202E}gnp.exe",
            "x\u{2066}y",
            "\u{200F}dog",
            "c\u{200B}at",
            "\u{FEFF}cat",
        ] {
            assert!(forbidden_characters(name).is_some(), "{name:?}");
        }
        assert!(forbidden_characters("a\tb").is_some());
        for name in ["cat", "گربه\u{200C}ها", "👩\u{200D}🔬", "Straße", "猫"] {
            assert_eq!(forbidden_characters(name), None, "{name:?}");
        }
    }
}
