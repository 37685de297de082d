//! Database and role names: generation and the platform's naming rules.
//!
//! Why this module exists: every client of a cluster can list all its databases and
//! roles, so a name must reveal nothing about the customer behind it. Names are
//! therefore heroku-style `adjective_noun_NNNN` (e.g. `mighty_pinguin_1337`), drawn
//! from embedded word lists, and every name — generated or given with `--name` — is
//! checked against the rules of the contract:
//!
//! - syntax ([`validate_base_name`]): a plain PostgreSQL identifier
//!   `^[a-z_][a-z0-9_]*$` that still fits PostgreSQL's 63-byte limit once
//!   [`INTEGRATION_SUFFIX`] is appended (longer identifiers are silently truncated,
//!   which would make two names collide), not reserved, not already an integration
//!   name. Pure, so it runs before any connection is made;
//! - the customer rule ([`validate_name_for_customers`]): no customer's name, its
//!   hyphen-less form, or any of its 4+ character tokens ([`customer_tokens`]);
//! - collisions: [`generate`] redraws while the caller's `is_taken` says a name (or
//!   its integration twin) exists on some server or in the catalog.
//!
//! DB_USER equals DB_NAME, so the same rules make a valid role name too.

use std::collections::HashSet;
use std::sync::LazyLock;

use rand::Rng;

use crate::error::{Error, Result};

/// Appended to a base name to name its twin on the integration server.
pub const INTEGRATION_SUFFIX: &str = "_integration";

/// PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The longest base name whose integration twin still fits [`MAX_IDENTIFIER_BYTES`].
pub const MAX_BASE_NAME_BYTES: usize = MAX_IDENTIFIER_BYTES - INTEGRATION_SUFFIX.len();

/// Names PostgreSQL or the platform own, refused as base names (besides the catalog
/// database and the `pg_` prefix). `public`, `none` and the `current_*`/`session_user`
/// words cannot be role names, and DB_USER equals DB_NAME.
const RESERVED_NAMES: &[&str] = &[
    "postgres",
    "template0",
    "template1",
    "public",
    "none",
    "current_user",
    "current_role",
    "session_user",
];

/// How many names [`generate`] draws before it gives up.
pub const MAX_GENERATE_ATTEMPTS: usize = 1000;

static ADJECTIVES: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| word_list(include_str!("names/adjectives.txt")));
static NOUNS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| word_list(include_str!("names/nouns.txt")));

fn word_list(text: &'static str) -> Vec<&'static str> {
    text.lines()
        .map(str::trim)
        .filter(|word| !word.is_empty())
        .collect()
}

/// The embedded adjectives (lowercase ASCII letters, at most 10 each).
pub fn adjectives() -> &'static [&'static str] {
    &ADJECTIVES
}

/// The embedded nouns (lowercase ASCII letters, at most 10 each).
pub fn nouns() -> &'static [&'static str] {
    &NOUNS
}

/// Quote user input for a message: `{:?}` escapes quotes, control characters and
/// invisible code points; very long input is cut so a message stays readable.
fn quote(input: &str) -> String {
    const SHOWN: usize = 80;
    if input.chars().count() <= SHOWN {
        return format!("{input:?}");
    }
    let head: String = input.chars().take(SHOWN).collect();
    format!("{head:?}… ({} bytes)", input.len())
}

/// A customer name, as the contract's "Names" says: `^[a-z0-9]+(-[a-z0-9]+)*$`, 3 to 63
/// characters, at least one letter. No leading, trailing or doubled `-`, and no name
/// so short that its forms would forbid most names (a customer `a-` forbids `a`, `a_`
/// and so every generated name).
pub fn validate_customer(customer: &str) -> Result<()> {
    let bytes = customer.as_bytes();
    let lowercase_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let parts_ok = customer
        .split('-')
        .all(|part| !part.is_empty() && part.bytes().all(|b| lowercase_alnum(&b)));
    let well_formed =
        (3..=63).contains(&bytes.len()) && parts_ok && bytes.iter().any(|b| b.is_ascii_lowercase());
    if well_formed {
        Ok(())
    } else {
        Err(Error::refused(format!(
            "customer {} refused: a customer name must match ^[a-z0-9]+(-[a-z0-9]+)*$ with 3 to \
             63 characters and at least one letter (lowercase ASCII letters and digits, single \
             hyphens between them, none at the start or the end)",
            quote(customer)
        )))
    }
}

/// The substrings a name must not contain because of this customer, lowercase: the
/// name itself, the name with its `-` replaced by `_` and with them removed, and every
/// alphanumeric token of 4 or more characters (`flux-dock` gives `flux-dock`,
/// `flux_dock`, `fluxdock`, `flux`, `dock`). Never an empty string; no duplicates.
pub fn customer_tokens(customer: &str) -> Vec<String> {
    let customer = customer.trim().to_lowercase();
    let mut tokens: Vec<String> = Vec::new();
    if !customer.chars().any(|c| c.is_ascii_alphanumeric()) {
        // Not a customer name (validate_customer refuses it): nothing it could reveal.
        return tokens;
    }
    let mut push = |token: String| {
        if !token.is_empty() && !tokens.contains(&token) {
            tokens.push(token);
        }
    };
    push(customer.clone());
    push(customer.replace('-', "_"));
    push(customer.replace('-', ""));
    for token in customer.split(|c: char| !c.is_ascii_alphanumeric()) {
        if token.len() >= 4 {
            push(token.to_string());
        }
    }
    tokens
}

/// The first customer (and which of its tokens) whose name shows in `name`, compared
/// case-insensitively. A trailing [`INTEGRATION_SUFFIX`] is not searched: every
/// integration twin carries it, so it tells nothing about a customer (and a customer
/// called `ratio` must not make every twin a violation); the base name before it is.
pub fn find_customer_in_name<'a>(
    name: &str,
    customers: impl IntoIterator<Item = &'a str>,
) -> Option<(String, String)> {
    let lowered = name.to_lowercase();
    let searched = lowered.strip_suffix(INTEGRATION_SUFFIX).unwrap_or(&lowered);
    customers.into_iter().find_map(|customer| {
        customer_tokens(customer)
            .into_iter()
            .find(|token| searched.contains(token.as_str()))
            .map(|token| (customer.to_string(), token))
    })
}

/// Syntax and reserved names, with no catalog and no connection needed: a base name
/// (the production name; its twin is [`integration_name`]) must match
/// `^[a-z_][a-z0-9_]*$`, must not end in [`INTEGRATION_SUFFIX`], must not be reserved
/// (`postgres`, `template0`, `template1`, the catalog database `catalog_db`, role
/// names PostgreSQL forbids, a `pg_` prefix), and must fit 63 bytes with the suffix.
pub fn validate_base_name(name: &str, catalog_db: &str) -> Result<()> {
    let quoted = quote(name);
    if name.is_empty() {
        return Err(Error::refused(
            "name \"\" refused: a name must not be empty; give one with --name or omit --name to \
             generate one",
        ));
    }
    let bytes = name.as_bytes();
    let well_formed = matches!(bytes[0], b'a'..=b'z' | b'_')
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'));
    if !well_formed {
        return Err(Error::refused(format!(
            "name {quoted} refused: a name must match ^[a-z_][a-z0-9_]*$ (lowercase ASCII \
             letters, digits, underscores, not starting with a digit)"
        )));
    }
    if name.ends_with(INTEGRATION_SUFFIX) {
        return Err(Error::refused(format!(
            "name {quoted} refused: a base name must not end in {INTEGRATION_SUFFIX:?}; give \
             the base name without it, odoo-db appends the suffix for the integration twin itself"
        )));
    }
    if name == catalog_db || integration_name(name) == catalog_db {
        return Err(Error::refused(format!(
            "name {quoted} refused: it is reserved, {catalog_db:?} is odoo-db's catalog database; \
             choose another name"
        )));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(Error::refused(format!(
            "name {quoted} refused: it is reserved by PostgreSQL (reserved: {}); choose another name",
            RESERVED_NAMES.join(", ")
        )));
    }
    if name.starts_with("pg_") {
        return Err(Error::refused(format!(
            "name {quoted} refused: names starting with \"pg_\" are reserved for PostgreSQL's \
             system roles; choose another name"
        )));
    }
    if name.len() > MAX_BASE_NAME_BYTES {
        return Err(Error::refused(format!(
            "name {quoted} refused: it is {} bytes, a base name may have at most \
             {MAX_BASE_NAME_BYTES} so that it plus {INTEGRATION_SUFFIX:?} fits PostgreSQL's \
             {MAX_IDENTIFIER_BYTES}-byte identifier limit (longer identifiers are silently \
             truncated, which would make two names collide); choose a shorter name",
            name.len()
        )));
    }
    Ok(())
}

/// The customer rule: `name` must not contain any customer's name, its `-`→`_` or
/// hyphen-less form, or a 4+ character token (see [`find_customer_in_name`]).
pub fn validate_name_for_customers<'a>(
    name: &str,
    customers: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    let Some((customer, token)) = find_customer_in_name(name, customers) else {
        return Ok(());
    };
    let what = describe_token(&customer, &token);
    Err(Error::refused(format!(
        "name {} refused: it contains {token:?}, {what}; clients can list every database and \
         role of a cluster, so a database name must never contain a customer's name; choose \
         another name or omit --name to generate one",
        quote(name)
    )))
}

/// Which form of `customer`'s name `token` is, for messages.
pub fn describe_token(customer: &str, token: &str) -> String {
    let lowered = customer.to_lowercase();
    if token == lowered {
        format!("the name of customer {customer:?}")
    } else if lowered.contains('-') && token == lowered.replace('-', "_") {
        format!("customer {customer:?} with its hyphens as underscores")
    } else if lowered.contains('-') && token == lowered.replace('-', "") {
        format!("customer {customer:?} without its hyphens")
    } else {
        format!("a token of customer {customer:?}")
    }
}

/// The integration twin of a base name: `<base>_integration`.
pub fn integration_name(base: &str) -> String {
    format!("{base}{INTEGRATION_SUFFIX}")
}

/// The base name of an integration twin, `None` unless `name` ends in
/// [`INTEGRATION_SUFFIX`] after a non-empty base.
pub fn base_of_integration(name: &str) -> Option<&str> {
    name.strip_suffix(INTEGRATION_SUFFIX)
        .filter(|base| !base.is_empty())
}

/// Whether a base name is unavailable given `taken` (every database and role on the
/// clusters, the catalog's names and the tombstones of retired customers): the name
/// itself or its integration twin is in it.
pub fn is_taken(candidate: &str, taken: &std::collections::HashSet<String>) -> bool {
    taken.contains(candidate) || taken.contains(&integration_name(candidate))
}

/// Draw a fresh `adjective_noun_NNNN` name with `rng` (production passes
/// `rand::rngs::OsRng`): redrawn until it passes [`validate_base_name`] (no catalog
/// name can be drawn, hence the empty one), contains no token of any of `customers`,
/// and `is_taken` (which the caller makes check the name and its integration twin on
/// every server and in the catalog) says it is free. Fails after
/// [`MAX_GENERATE_ATTEMPTS`] draws.
pub fn generate(
    rng: &mut impl rand::RngCore,
    customers: &[&str],
    is_taken: impl Fn(&str) -> bool,
) -> Result<String> {
    let adjectives = adjectives();
    let nouns = nouns();
    let tokens: HashSet<String> = customers
        .iter()
        .flat_map(|customer| customer_tokens(customer))
        .collect();
    for _ in 0..MAX_GENERATE_ATTEMPTS {
        let name = format!(
            "{}_{}_{:04}",
            adjectives[rng.gen_range(0..adjectives.len())],
            nouns[rng.gen_range(0..nouns.len())],
            rng.gen_range(0..10_000u32),
        );
        if tokens.iter().any(|token| name.contains(token.as_str())) {
            continue;
        }
        if validate_base_name(&name, "").is_err() || is_taken(&name) {
            continue;
        }
        return Ok(name);
    }
    Err(Error::failed(format!(
        "no free name after {MAX_GENERATE_ATTEMPTS} draws (the customers' names rule out most \
         words, or the servers already hold most names); give a name with --name"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Class;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::cell::RefCell;

    fn refused_with(result: Result<()>, rule: &str) -> String {
        let error = result.expect_err("must be refused");
        assert_eq!(error.class(), Class::Refused, "{error}");
        let message = error.to_string();
        assert!(message.contains(rule), "{message:?} does not say {rule:?}");
        message
    }

    #[test]
    fn word_lists_are_large_clean_and_distinct() {
        for (kind, list) in [("adjectives", adjectives()), ("nouns", nouns())] {
            assert!(list.len() >= 300, "{kind}: only {}", list.len());
            let mut seen = HashSet::new();
            for word in list {
                assert!(
                    (2..=10).contains(&word.len()) && word.bytes().all(|b| b.is_ascii_lowercase()),
                    "{kind}: {word:?} is not 2 to 10 lowercase ASCII letters"
                );
                assert!(seen.insert(word), "{kind}: {word:?} twice");
            }
        }
        let adjectives: HashSet<_> = adjectives().iter().collect();
        for noun in nouns() {
            assert!(!adjectives.contains(noun), "{noun:?} is in both lists");
        }
        // Nothing offensive or gloomy in a customer-facing name.
        let banned_substrings = [
            "fuck", "shit", "cunt", "cock", "dick", "piss", "porn", "nazi", "slut", "whore",
            "kill", "dead", "drunk", "sick", "ugly", "anus", "penis", "poop", "crap", "damn",
            "rape", "sex", "fag", "hate", "bomb", "gun", "die",
        ];
        let banned_words = [
            "angry", "lazy", "stupid", "dumb", "fat", "evil", "toxic", "lonely", "sad", "dark",
            "broken", "crazy", "naked", "hot", "sexy", "bitter", "nasty", "wicked", "rat", "pig",
            "cow", "ass", "worm", "leech", "vulture", "cougar", "catfish", "uranus", "beaver",
        ];
        for word in adjectives.iter().copied().chain(nouns()) {
            for banned in banned_substrings {
                assert!(!word.contains(banned), "{word:?} contains {banned:?}");
            }
            assert!(
                !banned_words.contains(word),
                "{word:?} is not for customers"
            );
        }
        // The contract's example must be drawable, and the pinguin-bau test meaningful.
        assert!(self::adjectives().contains(&"mighty"));
        assert!(nouns().contains(&"pinguin") && nouns().contains(&"penguin"));
    }

    #[test]
    fn customer_names_follow_the_pattern() {
        for good in [
            "abc",
            "acme",
            "flux-dock",
            "0day",
            "a-b",
            "my-co",
            "ab-cd-ef",
            "9a9",
            "1-2-x",
            &"a".repeat(63),
        ] {
            validate_customer(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
        for bad in [
            "",
            "a",
            "ab",
            "a-",
            "e-",
            "y-",
            "ab-",
            "a--b",
            "abc--d",
            "123",
            "1-2-3",
            "-acme",
            "acme-",
            "Acme",
            "ac me",
            "acme_corp",
            "acme;",
            "café",
            "ｆｕｌｌ",
            "a'b",
            "$(id)",
            "acme\n",
            &"a".repeat(64),
        ] {
            refused_with(validate_customer(bad), "^[a-z0-9]+(-[a-z0-9]+)*$");
        }
    }

    #[test]
    fn tokens_are_name_dashless_name_and_long_parts() {
        assert_eq!(
            customer_tokens("flux-dock"),
            ["flux-dock", "flux_dock", "fluxdock", "flux", "dock"]
        );
        assert_eq!(customer_tokens("acme"), ["acme"]);
        assert_eq!(customer_tokens("ab-cd"), ["ab-cd", "ab_cd", "abcd"]);
        assert_eq!(
            customer_tokens("pinguin-bau"),
            ["pinguin-bau", "pinguin_bau", "pinguinbau", "pinguin"]
        );
        assert_eq!(
            customer_tokens("Big-Corp-2024"),
            [
                "big-corp-2024",
                "big_corp_2024",
                "bigcorp2024",
                "corp",
                "2024"
            ]
        );
        assert!(customer_tokens("").is_empty());
        assert!(customer_tokens("-").is_empty());
    }

    #[test]
    fn customer_found_case_insensitively_in_any_customer() {
        let customers = ["acme-corp", "flux-dock"];
        assert_eq!(
            find_customer_in_name("mighty_pinguin_1337", customers),
            None
        );
        assert_eq!(
            find_customer_in_name("my_DOCK_db", customers),
            Some(("flux-dock".into(), "dock".into()))
        );
        assert_eq!(
            find_customer_in_name("acmecorp", customers),
            Some(("acme-corp".into(), "acmecorp".into()))
        );
        assert_eq!(
            find_customer_in_name("Acme-Corp", customers),
            Some(("acme-corp".into(), "acme-corp".into()))
        );
        // The fixed suffix says nothing about a customer; the base before it does.
        assert_eq!(
            find_customer_in_name("calm_owl_0001_integration", ["ratio"]),
            None
        );
        assert_eq!(
            find_customer_in_name("ratio_owl_integration", ["ratio"]),
            Some(("ratio".into(), "ratio".into()))
        );
        assert_eq!(find_customer_in_name("anything", []), None);
    }

    #[test]
    fn names_with_customer_tokens_are_refused() {
        let customers = ["acme-corp", "pinguin-bau", "ab"];
        let message = refused_with(
            validate_name_for_customers("acme_db", customers),
            "must never contain a customer's name",
        );
        assert!(
            message.contains("it contains \"acme\", a token of customer \"acme-corp\""),
            "{message}"
        );
        let message = refused_with(
            validate_name_for_customers("acmecorp", customers),
            "acmecorp",
        );
        assert!(message.contains("without its hyphens"), "{message}");
        refused_with(
            validate_name_for_customers("mighty_pinguin_1337", customers),
            "pinguin",
        );
        let message = refused_with(
            validate_name_for_customers("fabled_owl", customers),
            "\"ab\"",
        );
        assert!(message.contains("the name of customer \"ab\""), "{message}");
        validate_name_for_customers("mighty_penguin_1337", customers).unwrap();
    }

    #[test]
    fn hyphens_as_underscores_are_refused_as_substrings() {
        // The two examples: neither has a 4+ character token to catch it.
        let message = refused_with(
            validate_name_for_customers("my_co_db", ["my-co"]),
            "\"my_co\"",
        );
        assert!(message.contains("hyphens as underscores"), "{message}");
        refused_with(
            validate_name_for_customers("x_ab_cd_ef", ["ab-cd-ef"]),
            "\"ab_cd_ef\"",
        );
        refused_with(
            validate_name_for_customers("x_abcdef_1", ["ab-cd-ef"]),
            "without its hyphens",
        );
        refused_with(validate_name_for_customers("MY_CO", ["my-co"]), "my_co");
        // Parts alone are short tokens: allowed.
        validate_name_for_customers("my_cod", ["my-co-x"]).unwrap();
        validate_name_for_customers("calm_owl_0001", ["my-co", "ab-cd-ef"]).unwrap();
        // Generated names never hold the underscore form either (it spans the parts).
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..2000 {
            let name = generate(&mut rng, &["calm-owl"], |_| false).unwrap();
            assert!(!name.contains("calm_owl"), "{name}");
        }
    }

    #[test]
    fn integration_names_round_trip() {
        assert_eq!(
            integration_name("calm_owl_0042"),
            "calm_owl_0042_integration"
        );
        assert_eq!(
            base_of_integration("calm_owl_0042_integration"),
            Some("calm_owl_0042")
        );
        assert_eq!(base_of_integration("calm_owl_0042"), None);
        assert_eq!(base_of_integration("_integration"), None);
        assert_eq!(base_of_integration(&integration_name("x")), Some("x"),);
    }

    #[test]
    fn longest_base_name_fits_with_suffix() {
        let longest = "a".repeat(MAX_BASE_NAME_BYTES);
        validate_base_name(&longest, "odoo_db").unwrap();
        assert_eq!(integration_name(&longest).len(), 63);
        refused_with(
            validate_base_name(&format!("{longest}b"), "odoo_db"),
            "63-byte",
        );
    }

    #[test]
    fn hostile_names_are_refused_with_their_rule() {
        const SYNTAX: &str = "must match ^[a-z_][a-z0-9_]*$";
        let long = "b".repeat(52);
        let corpus: &[(&str, &str)] = &[
            ("", "must not be empty"),
            ("Foo", SYNTAX),
            ("ACME", SYNTAX),
            ("a'b", SYNTAX),
            ("a\"b", SYNTAX),
            ("a;drop database x", SYNTAX),
            ("x; DROP ROLE postgres; --", SYNTAX),
            ("$(reboot)", SYNTAX),
            ("`id`", SYNTAX),
            ("a b", SYNTAX),
            (" ab", SYNTAX),
            ("ab\n", SYNTAX),
            ("a\0b", SYNTAX),
            ("a-b", SYNTAX),
            ("a.b", SYNTAX),
            ("1abc", SYNTAX),
            ("café", SYNTAX),
            ("ｆｕｌｌ", SYNTAX),
            ("caf\u{0301}e", SYNTAX),
            ("a\u{200b}b", SYNTAX),
            ("\u{212a}elvin", SYNTAX),
            (&long, "at most 51"),
            ("calm_owl_integration", "must not end in \"_integration\""),
            ("_integration", "must not end in \"_integration\""),
            ("pg_x", "starting with \"pg_\""),
            ("pg_monitor", "starting with \"pg_\""),
            ("postgres", "reserved by PostgreSQL"),
            ("template0", "reserved by PostgreSQL"),
            ("template1", "reserved by PostgreSQL"),
            ("public", "reserved by PostgreSQL"),
            ("odoo_db", "catalog database"),
        ];
        for (name, rule) in corpus {
            let message = refused_with(validate_base_name(name, "odoo_db"), rule);
            assert!(message.starts_with("name "), "{message}");
            assert!(
                !message.contains('\n') && !message.contains('\0'),
                "{message:?}"
            );
        }
        // A catalog called `x_integration` reserves the base `x`, whose twin it would be.
        refused_with(
            validate_base_name("shop", "shop_integration"),
            "catalog database",
        );
        // Quoting escapes what a terminal would interpret.
        let message = refused_with(validate_base_name("a\u{1b}[31mb", "odoo_db"), SYNTAX);
        assert!(
            message.contains("\\u{1b}") && !message.contains('\u{1b}'),
            "{message:?}"
        );
        let message = refused_with(validate_base_name(&"x".repeat(10_000), "odoo_db"), "51");
        assert!(message.len() < 600, "{} bytes", message.len());
        for good in [
            "a",
            "_a",
            "calm_owl_0042",
            "mighty_pinguin_1337",
            "odoo_db2",
            "pg",
        ] {
            validate_base_name(good, "odoo_db").unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
    }

    #[test]
    fn generated_names_have_the_contract_shape() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..1000 {
            let name = generate(&mut rng, &[], |_| false).unwrap();
            let parts: Vec<&str> = name.split('_').collect();
            assert_eq!(parts.len(), 3, "{name}");
            assert!(adjectives().contains(&parts[0]), "{name}");
            assert!(nouns().contains(&parts[1]), "{name}");
            assert!(
                parts[2].len() == 4 && parts[2].bytes().all(|b| b.is_ascii_digit()),
                "{name}"
            );
            validate_base_name(&name, "odoo_db").unwrap();
            assert!(integration_name(&name).len() <= MAX_IDENTIFIER_BYTES);
        }
    }

    #[test]
    fn hundred_thousand_names_unique_and_free_of_customers() {
        let customers = ["pinguin-bau", "flux-dock", "acme-corp"];
        let forbidden: Vec<String> = customers.iter().flat_map(|c| customer_tokens(c)).collect();
        let taken = RefCell::new(HashSet::new());
        let mut rng = StdRng::seed_from_u64(20_240_611);
        let mut penguins = 0;
        for _ in 0..100_000 {
            let name = generate(&mut rng, &customers, |name| taken.borrow().contains(name))
                .expect("a free name");
            for token in &forbidden {
                assert!(!name.contains(token.as_str()), "{name} contains {token}");
            }
            penguins += usize::from(name.contains("penguin"));
            assert!(
                taken.borrow_mut().insert(name.clone()),
                "{name} drawn twice"
            );
        }
        assert_eq!(taken.borrow().len(), 100_000);
        // `penguin` is still drawn: only the customer's own spelling is ruled out.
        assert!(penguins > 0);
        // And `pinguin` would be drawn without that customer, so the check above bites.
        let mut rng = StdRng::seed_from_u64(20_240_611);
        assert!((0..20_000)
            .map(|_| generate(&mut rng, &[], |_| false).unwrap())
            .any(|name| name.contains("pinguin")));
    }

    #[test]
    fn generation_never_draws_a_tombstone() {
        // The first 200 names this seed draws are retired: half as base names, half
        // only through their integration twin.
        let mut rng = StdRng::seed_from_u64(14);
        let first: Vec<String> = (0..200)
            .map(|_| generate(&mut rng, &[], |_| false).unwrap())
            .collect();
        let tombstones: HashSet<String> = first
            .iter()
            .enumerate()
            .map(|(i, name)| {
                if i % 2 == 0 {
                    name.clone()
                } else {
                    integration_name(name)
                }
            })
            .collect();
        let mut rng = StdRng::seed_from_u64(14);
        for _ in 0..200 {
            let name =
                generate(&mut rng, &[], |candidate| is_taken(candidate, &tombstones)).unwrap();
            assert!(!first.contains(&name), "{name} is a tombstone");
            assert!(!is_taken(&name, &tombstones));
        }
        assert!(is_taken(&first[0], &tombstones));
        assert!(
            is_taken(&first[1], &tombstones),
            "through its integration twin"
        );
    }

    #[test]
    fn generation_avoids_taken_names_and_gives_up_when_all_are() {
        let mut rng = StdRng::seed_from_u64(1);
        let first = generate(&mut rng, &[], |_| false).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let second = generate(&mut rng, &[], |name| name == first).unwrap();
        assert_ne!(first, second);
        let error = generate(&mut rng, &[], |_| true).unwrap_err();
        assert_eq!(error.class(), Class::Failed);
        assert!(error.to_string().contains("--name"), "{error}");
    }
}
