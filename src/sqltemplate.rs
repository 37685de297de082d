//! The one way odoo-db writes SQL that differs between PostgreSQL versions.
//!
//! odoo-db supports PostgreSQL 12 to 18, and the system views it reads gain columns
//! and functions along the way (`pg_get_wal_replay_pause_state()` in 14,
//! `datlocprovider` in 15, ...). Rather than one copy of a query per version, which
//! drift apart, a query is written once in `sql/` with named placeholders (`{name}`),
//! and each placeholder lists what a server gets in its place from which
//! `server_version_num` on ([`Placeholder`]). [`render`] fills them in for one server.

/// A placeholder `{name}` in a SQL template and what each server version gets there.
#[derive(Debug)]
pub struct Placeholder {
    /// Written `{name}` in the template.
    pub name: &'static str,
    /// What the oldest supported version (PostgreSQL 12) gets.
    pub oldest: &'static str,
    /// `(server_version_num, text)`, in ascending order: from that version on, `text`.
    pub since: &'static [(i32, &'static str)],
}

impl Placeholder {
    /// The text a server of `version_num` (e.g. 150014) gets in place of `{name}`.
    pub fn for_version(&self, version_num: i32) -> &'static str {
        self.since
            .iter()
            .rev()
            .find(|(since, _)| version_num >= *since)
            .map_or(self.oldest, |(_, text)| text)
    }
}

/// `template` with every `{name}` of `placeholders` (comments included) replaced by
/// what a server of `version_num` gets there.
pub fn render(template: &str, placeholders: &[Placeholder], version_num: i32) -> String {
    placeholders
        .iter()
        .fold(template.to_string(), |sql, placeholder| {
            debug_assert!(
                sql.contains(&format!("{{{}}}", placeholder.name)),
                "placeholder {{{}}} missing from its template",
                placeholder.name
            );
            sql.replace(
                &format!("{{{}}}", placeholder.name),
                placeholder.for_version(version_num),
            )
        })
}

/// Checks a template and its placeholders for every supported version (12 to 18): each
/// placeholder is used, and none is left unfilled. For the unit tests of the modules
/// that own templates.
#[cfg(test)]
pub fn assert_complete(template: &str, placeholders: &[Placeholder]) {
    for placeholder in placeholders {
        assert!(
            template.contains(&format!("{{{}}}", placeholder.name)),
            "{{{}}} is not in the template",
            placeholder.name
        );
        assert!(
            placeholder.since.windows(2).all(|w| w[0].0 < w[1].0),
            "{{{}}}: versions out of order",
            placeholder.name
        );
    }
    for major in 12..=18 {
        let sql = render(template, placeholders, major * 10000);
        let mut rest = sql.as_str();
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let word_end = after
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(after.len());
            assert!(
                word_end == 0 || !after[word_end..].starts_with('}'),
                "PostgreSQL {major}: {{{}}} left unfilled",
                &after[..word_end]
            );
            rest = after;
        }
    }
}

/// `sql` without its `--` comment lines and trailing blanks: what the server executes,
/// for tests that compare statements whose explanations differ.
#[cfg(test)]
pub fn statement(sql: &str) -> String {
    sql.lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCALE: Placeholder = Placeholder {
        name: "locale",
        oldest: "NULL::text",
        since: &[
            (150000, "d.daticulocale::text"),
            (170000, "d.datlocale::text"),
        ],
    };

    #[test]
    fn each_version_gets_the_newest_text_it_has_reached() {
        assert_eq!(LOCALE.for_version(120022), "NULL::text");
        assert_eq!(LOCALE.for_version(149999), "NULL::text");
        assert_eq!(LOCALE.for_version(150000), "d.daticulocale::text");
        assert_eq!(LOCALE.for_version(160004), "d.daticulocale::text");
        assert_eq!(LOCALE.for_version(170000), "d.datlocale::text");
        assert_eq!(LOCALE.for_version(180001), "d.datlocale::text");
    }

    #[test]
    fn render_fills_every_occurrence() {
        let template = "-- {locale} by version\nSELECT {locale} AS locale, '{}'::text[]";
        assert_complete(template, &[LOCALE]);
        assert_eq!(
            render(template, &[LOCALE], 170002),
            "-- d.datlocale::text by version\nSELECT d.datlocale::text AS locale, '{}'::text[]"
        );
        assert_eq!(
            statement(&render(template, &[LOCALE], 120000)),
            "SELECT NULL::text AS locale, '{}'::text[]"
        );
    }

    #[test]
    #[should_panic(expected = "left unfilled")]
    fn an_unknown_placeholder_is_caught() {
        assert_complete("SELECT {locale}, {icu_rules}", &[LOCALE]);
    }
}
