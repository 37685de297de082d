//! Quoting for the few statements that take no bind parameters (DDL: CREATE ROLE,
//! CREATE DATABASE, GRANT, ALTER … SET). Names are validated before they get here;
//! quoting is the second fence, done by `postgres_protocol::escape`, the port of
//! libpq's `PQescapeIdentifier`/`PQescapeLiteral`, rather than by hand.

use postgres_protocol::escape::{escape_identifier, escape_literal};

/// Double-quote an identifier: `"name"`, a `"` inside doubled.
pub fn quote_ident(name: &str) -> String {
    escape_identifier(name)
}

/// Single-quote a literal: `'value'`, a `'` inside doubled. A value holding a
/// backslash becomes ` E'…'` with the backslashes doubled, which reads the same
/// whatever `standard_conforming_strings` says.
pub fn quote_literal(value: &str) -> String {
    escape_literal(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written quoting these functions replaced, kept here as the reference
    /// their output must equal.
    fn by_hand_ident(name: &str) -> String {
        format!("\"{}\"", name.replace('"', "\"\""))
    }

    fn by_hand_literal(value: &str) -> String {
        format!("'{}'", value.replace('\'', "''"))
    }

    const SAMPLES: &[&str] = &[
        "",
        "calm_owl_0001",
        "calm_owl_0001_integration",
        "Mixed Case",
        "with \"double\" quotes",
        "with 'single' quotes",
        "''\"\"",
        "semi;colon -- comment",
        "ünïcödé ☃",
        "new\nline",
        "en_US.UTF-8",
    ];

    #[test]
    fn identifiers_are_quoted_as_before() {
        for sample in SAMPLES.iter().chain(&["back\\slash"]) {
            assert_eq!(quote_ident(sample), by_hand_ident(sample), "{sample:?}");
        }
    }

    #[test]
    fn literals_without_backslashes_are_quoted_as_before() {
        for sample in SAMPLES {
            assert_eq!(quote_literal(sample), by_hand_literal(sample), "{sample:?}");
        }
    }

    #[test]
    fn literals_with_backslashes_use_the_escape_string_syntax() {
        assert_eq!(quote_literal("a\\b"), " E'a\\\\b'");
        assert_eq!(quote_literal("it's\\"), " E'it''s\\\\'");
    }
}
