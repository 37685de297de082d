//! A database's properties: captured before a drop, checked, and put back after.
//!
//! `DROP DATABASE` + `CREATE DATABASE x OWNER x` by hand loses everything that lives in
//! `pg_database` and `pg_db_role_setting` rather than inside the database: encoding and
//! locale (template0 has its own), tablespace, connection limit, the ACL, the comment,
//! `ALTER DATABASE … SET` and `ALTER ROLE … IN DATABASE … SET`. This module captures all
//! of it in one query ([`inspect`]), decides before anything changes whether odoo-db's
//! least-privilege role can put every piece back ([`check_restorable`]: a setting of
//! superuser context cannot be set by it, for one), and generates the statements that
//! recreate the database with exactly these properties. The captured [`DbProps`] is
//! what the catalog records as the plan, so a run killed after the drop is finished
//! from it.

use std::fmt::Write;

use serde::{Deserialize, Serialize};
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::error::{Context, Error, Result};
use crate::pg::quote::{quote_ident, quote_literal};
use crate::sqltemplate::{render, Placeholder};
use crate::units::format_bytes;
use pgconn::ConnParams;

const INSPECT_SQL: &str = include_str!("../../sql/recreate/inspect.sql");
const RIGHTS_SQL: &str = include_str!("../../sql/recreate/rights.sql");
const CONTENTS_SQL: &str = include_str!("../../sql/recreate/contents.sql");

/// What a new database must get back (the recorded plan). Serialized into the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbProps {
    pub name: String,
    pub owner: String,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    /// `libc`, `icu` or `builtin` (PostgreSQL 17+).
    pub locale_provider: String,
    /// The ICU locale (`icu`) or the builtin locale (`builtin`).
    pub provider_locale: Option<String>,
    /// ICU tailoring rules (PostgreSQL 16+).
    pub icu_rules: Option<String>,
    pub tablespace: String,
    /// -1: no limit.
    pub connection_limit: i32,
    pub allow_connections: bool,
    /// The ACL item by item, in order; `None` when `datacl` is NULL (the default ACL).
    pub acl: Option<Vec<AclItem>>,
    /// `datacl` as PostgreSQL prints it (NULL: the default).
    pub acl_text: Option<String>,
    /// `coalesce(datacl, acldefault(...))`: two ACLs that mean the same compare equal.
    pub effective_acl: String,
    pub comment: Option<String>,
    /// `ALTER DATABASE … SET`: `name=value` entries as `pg_db_role_setting` holds them.
    pub settings: Vec<String>,
    /// `ALTER ROLE … IN DATABASE … SET`, per role.
    pub role_settings: Vec<RoleSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSettings {
    pub role: String,
    pub settings: Vec<String>,
}

/// One `aclitem`: what `grantor` gave `grantee` (None: PUBLIC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclItem {
    pub grantee: Option<String>,
    pub grantor: String,
    /// Granted without grant option.
    pub privileges: Vec<String>,
    /// Granted WITH GRANT OPTION.
    pub grantable: Vec<String>,
}

/// A session connected to the database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub pid: i32,
    pub user: Option<String>,
    pub application: Option<String>,
    pub client: String,
    pub state: Option<String>,
    pub backend_type: Option<String>,
    pub superuser: bool,
}

/// The properties plus what decides whether the database may be dropped now.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub props: DbProps,
    pub is_template: bool,
    pub size_bytes: i64,
    pub sessions: Vec<Session>,
    /// Objects under which DROP DATABASE fails (slots, prepared transactions,
    /// subscriptions).
    pub blockers: Vec<String>,
    pub server_version: String,
}

/// `server_version_num` (e.g. 150014), which picks version-dependent SQL.
pub async fn server_version_num(client: &Client) -> Result<i32> {
    let text: String = client
        .query_typed_one("SELECT current_setting('server_version_num')", &[])
        .await?
        .get(0);
    text.parse()
        .map_err(|_| Error::failed(format!("unexpected server_version_num {text:?}")))
}

/// The `pg_database` columns [`INSPECT_SQL`] reads that appeared in PostgreSQL 15
/// (datlocprovider, daticulocale), 16 (daticurules) and 17 (datlocale replaced
/// daticulocale).
const INSPECT_BY_VERSION: &[Placeholder] = &[
    Placeholder {
        name: "locale_provider",
        oldest: "'c'::text",
        since: &[(150000, "d.datlocprovider::text")],
    },
    Placeholder {
        name: "icu_locale",
        oldest: "NULL::text",
        since: &[
            (150000, "d.daticulocale::text"),
            (170000, "d.datlocale::text"),
        ],
    },
    Placeholder {
        name: "icu_rules",
        oldest: "NULL::text",
        since: &[(160000, "d.daticurules::text")],
    },
];

/// `has_parameter_privilege` arrived in PostgreSQL 15; before, only a superuser could
/// set a superuser-context setting.
const RIGHTS_BY_VERSION: &[Placeholder] = &[Placeholder {
    name: "set_privilege",
    oldest: "false",
    since: &[(150000, "has_parameter_privilege(p.name, 'SET')")],
}];

/// Trusted extensions arrived in PostgreSQL 13; before, none is.
const CONTENTS_BY_VERSION: &[Placeholder] = &[Placeholder {
    name: "trusted",
    oldest: "false",
    since: &[(130000, "v.trusted")],
}];

/// Which of a backup's extensions odoo-db's role cannot create here, for
/// [`check_extensions`].
const EXTENSIONS_SQL: &str =
    "SELECT n.name || CASE WHEN a.name IS NULL THEN ' (not installed on this server)'
                                       ELSE ' (not trusted: only a superuser may create it)' END
                   FROM unnest($1::text[]) AS n(name)
                   LEFT JOIN pg_catalog.pg_available_extensions a ON a.name = n.name
                   LEFT JOIN pg_catalog.pg_available_extension_versions v
                          ON v.name = a.name AND v.version = a.default_version
                  WHERE n.name <> 'plpgsql'
                    AND (a.name IS NULL OR (coalesce(v.superuser, true) AND NOT {trusted}))
                  ORDER BY 1";

const EXTENSIONS_BY_VERSION: &[Placeholder] = &[Placeholder {
    name: "trusted",
    oldest: "false",
    since: &[(130000, "coalesce(v.trusted, false)")],
}];

fn inspect_sql(version_num: i32) -> String {
    render(INSPECT_SQL, INSPECT_BY_VERSION, version_num)
}

#[derive(Deserialize)]
struct AclRow {
    item: i64,
    grantee: Option<String>,
    grantor: String,
    privilege: String,
    grantable: bool,
}

#[derive(Deserialize)]
struct SettingRow {
    role: Option<String>,
    config: Option<Vec<String>>,
}

/// Capture a database; `None` when it does not exist.
pub async fn inspect(client: &Client, name: &str, version_num: i32) -> Result<Option<Inspection>> {
    let row = client
        .query_typed_opt(&inspect_sql(version_num), &[(&name, Type::TEXT)])
        .await
        .with_context(|| format!("inspecting database {name}"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let provider = match row.get::<_, String>("locale_provider").as_str() {
        "i" => "icu",
        "b" => "builtin",
        _ => "libc",
    }
    .to_string();
    let acl_text: Option<String> = row.get("acl_text");
    let acl_rows: Vec<AclRow> = from_json(row.get("acl"), "the ACL")?;
    let acl = acl_text.as_ref().map(|_| group_acl(acl_rows));
    let setting_rows: Vec<SettingRow> = from_json(row.get("settings"), "the settings")?;
    let mut settings = Vec::new();
    let mut role_settings = Vec::new();
    for setting in setting_rows {
        let config = setting.config.unwrap_or_default();
        match setting.role {
            None => settings = config,
            Some(role) => role_settings.push(RoleSettings {
                role,
                settings: config,
            }),
        }
    }
    let props = DbProps {
        name: name.to_string(),
        owner: row.get("owner"),
        encoding: row.get("encoding"),
        collate: row.get("collate"),
        ctype: row.get("ctype"),
        locale_provider: provider,
        provider_locale: row.get("icu_locale"),
        icu_rules: row.get("icu_rules"),
        tablespace: row.get("tablespace"),
        connection_limit: row.get("connection_limit"),
        allow_connections: row.get("allow_connections"),
        acl,
        acl_text,
        effective_acl: row.get("effective_acl"),
        comment: row.get("comment"),
        settings,
        role_settings,
    };
    Ok(Some(Inspection {
        props,
        is_template: row.get("is_template"),
        size_bytes: row.get("size_bytes"),
        sessions: from_json(row.get("sessions"), "the sessions")?,
        blockers: row.get("blockers"),
        server_version: row.get("server_version"),
    }))
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value, what: &str) -> Result<T> {
    serde_json::from_value(value)
        .map_err(|error| Error::failed(format!("reading {what} of the database: {error}")))
}

/// aclexplode's one row per privilege, back into one item per (grantee, grantor).
fn group_acl(rows: Vec<AclRow>) -> Vec<AclItem> {
    let mut items: Vec<(i64, AclItem)> = Vec::new();
    for row in rows {
        if items.last().map(|(n, _)| *n) != Some(row.item) {
            items.push((
                row.item,
                AclItem {
                    grantee: row.grantee.clone(),
                    grantor: row.grantor.clone(),
                    privileges: Vec::new(),
                    grantable: Vec::new(),
                },
            ));
        }
        let item = &mut items.last_mut().expect("pushed above").1;
        if row.grantable {
            item.grantable.push(row.privilege);
        } else {
            item.privileges.push(row.privilege);
        }
    }
    items.into_iter().map(|(_, item)| item).collect()
}

/// The ACL a database has while `datacl` is NULL: PUBLIC may connect and create
/// temporary tables, the owner may do everything.
pub fn default_acl(owner: &str) -> Vec<AclItem> {
    vec![
        AclItem {
            grantee: None,
            grantor: owner.to_string(),
            privileges: vec!["TEMPORARY".into(), "CONNECT".into()],
            grantable: vec![],
        },
        AclItem {
            grantee: Some(owner.to_string()),
            grantor: owner.to_string(),
            privileges: vec!["CREATE".into(), "TEMPORARY".into(), "CONNECT".into()],
            grantable: vec![],
        },
    ]
}

pub fn grantee_sql(grantee: &Option<String>) -> String {
    match grantee {
        None => "PUBLIC".to_string(),
        Some(role) => quote_ident(role),
    }
}

/// Run `statement` as `grantor` when that is not the owner: GRANT and REVOKE by a
/// member of the owner act as the owner, so any other grantor needs SET ROLE to be
/// reproduced.
fn as_grantor(owner: &str, grantor: &str, statement: String) -> String {
    if grantor == owner {
        statement
    } else {
        format!("SET ROLE {}; {statement}; RESET ROLE", quote_ident(grantor))
    }
}

/// Statements that turn the ACL `current` (None: NULL, the default) into exactly the
/// one of `props`: revoke everything from every grantee, then grant item by item in
/// order (new items are appended, so `datacl` reads the same as before). Nothing when
/// both are NULL, which keeps a NULL ACL NULL.
pub fn acl_statements(props: &DbProps, current: Option<&[AclItem]>) -> Vec<String> {
    if props.acl.is_none() && current.is_none() {
        return Vec::new();
    }
    let database = quote_ident(&props.name);
    let owner = &props.owner;
    let current = match current {
        Some(items) => items.to_vec(),
        None => default_acl(owner),
    };
    let target = props.acl.clone().unwrap_or_else(|| default_acl(owner));
    let mut statements = Vec::new();
    let mut revoked: Vec<(&str, &Option<String>)> = Vec::new();
    for item in &current {
        if revoked.contains(&(item.grantor.as_str(), &item.grantee)) {
            continue;
        }
        revoked.push((item.grantor.as_str(), &item.grantee));
        statements.push(as_grantor(
            owner,
            &item.grantor,
            format!(
                "REVOKE ALL ON DATABASE {database} FROM {} CASCADE",
                grantee_sql(&item.grantee)
            ),
        ));
    }
    for item in &target {
        let grantee = grantee_sql(&item.grantee);
        if !item.privileges.is_empty() {
            statements.push(as_grantor(
                owner,
                &item.grantor,
                format!(
                    "GRANT {} ON DATABASE {database} TO {grantee}",
                    item.privileges.join(", ")
                ),
            ));
        }
        if !item.grantable.is_empty() {
            statements.push(as_grantor(
                owner,
                &item.grantor,
                format!(
                    "GRANT {} ON DATABASE {database} TO {grantee} WITH GRANT OPTION",
                    item.grantable.join(", ")
                ),
            ));
        }
    }
    statements
}

/// While a restore fills the new database only odoo-db may connect: the owner (the
/// application's role) and PUBLIC lose CONNECT, odoo-db's role gets it. The owner keeps
/// CREATE and TEMPORARY, which the restore (run as the owner) needs.
pub fn staged_acl_statements(name: &str, owner: &str) -> Vec<String> {
    let database = quote_ident(name);
    vec![
        format!(
            "REVOKE CONNECT ON DATABASE {database} FROM PUBLIC, {}",
            quote_ident(owner)
        ),
        format!("GRANT CONNECT ON DATABASE {database} TO CURRENT_USER"),
    ]
}

/// Variables whose value is a list of quoted elements (pg_dump's list): their value must
/// be given back element by element, or the whole list would become one element.
const LIST_QUOTE_SETTINGS: &[&str] = &[
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
];

/// `name=value` of `pg_db_role_setting` as the `name = value` of `SET`.
pub fn setting_assignment(entry: &str) -> Result<String> {
    let (name, value) = entry.split_once('=').ok_or_else(|| {
        Error::failed(format!(
            "unexpected setting {entry:?} in pg_db_role_setting"
        ))
    })?;
    let value_sql = if LIST_QUOTE_SETTINGS.contains(&name.to_ascii_lowercase().as_str()) {
        split_guc_list(value)
            .iter()
            .map(|element| quote_literal(element))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        quote_literal(value)
    };
    Ok(format!("{} = {value_sql}", quote_ident(name)))
}

/// The elements of a list-valued setting as PostgreSQL prints it (`"$user", public`):
/// comma-separated, double quotes around an element protect commas and spaces, `""`
/// inside quotes is one quote.
fn split_guc_list(value: &str) -> Vec<String> {
    let mut elements = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut element = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        element.push('"');
                    } else {
                        break;
                    }
                } else {
                    element.push(c);
                }
            }
            while chars.peek().is_some_and(|c| *c != ',') {
                chars.next();
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                element.push(c);
                chars.next();
            }
            element = element.trim_end().to_string();
        }
        elements.push(element);
        if chars.next().is_none() {
            break;
        }
    }
    elements
}

/// `ALTER DATABASE … SET` and `ALTER ROLE … IN DATABASE … SET`, in the recorded order
/// (each appends to the stored array, so the order comes back too).
pub fn settings_statements(props: &DbProps) -> Result<Vec<String>> {
    let database = quote_ident(&props.name);
    let mut statements = Vec::new();
    for entry in &props.settings {
        statements.push(format!(
            "ALTER DATABASE {database} SET {}",
            setting_assignment(entry)?
        ));
    }
    for role in &props.role_settings {
        for entry in &role.settings {
            statements.push(format!(
                "ALTER ROLE {} IN DATABASE {database} SET {}",
                quote_ident(&role.role),
                setting_assignment(entry)?
            ));
        }
    }
    Ok(statements)
}

/// Statements that turn the per-database and per-role-in-database settings the
/// database has now (`current`) into exactly those of `target`, in order: nothing when
/// they are equal, else `RESET ALL` of what is there and [`settings_statements`].
/// Repeating them after a crash gives the same result.
pub fn settings_reset_statements(current: &DbProps, target: &DbProps) -> Result<Vec<String>> {
    if current.settings == target.settings && current.role_settings == target.role_settings {
        return Ok(Vec::new());
    }
    let database = quote_ident(&target.name);
    let mut statements = Vec::new();
    if !current.settings.is_empty() {
        statements.push(format!("ALTER DATABASE {database} RESET ALL"));
    }
    for role in &current.role_settings {
        statements.push(format!(
            "ALTER ROLE {} IN DATABASE {database} RESET ALL",
            quote_ident(&role.role)
        ));
    }
    statements.extend(settings_statements(target)?);
    Ok(statements)
}

pub fn comment_statement(props: &DbProps) -> Option<String> {
    props.comment.as_ref().map(|comment| {
        format!(
            "COMMENT ON DATABASE {} IS {}",
            quote_ident(&props.name),
            quote_literal(comment)
        )
    })
}

/// `CREATE DATABASE` from template0 with every property CREATE takes; connections
/// stay closed until the rest is in place (see the callers).
pub fn create_statement(props: &DbProps, version_num: i32) -> String {
    let mut sql = format!(
        "CREATE DATABASE {} WITH OWNER = {} TEMPLATE = template0 ENCODING = {} LC_COLLATE = {} LC_CTYPE = {}",
        quote_ident(&props.name),
        quote_ident(&props.owner),
        quote_literal(&props.encoding),
        quote_literal(&props.collate),
        quote_literal(&props.ctype),
    );
    if version_num >= 150000 {
        write!(sql, " LOCALE_PROVIDER = {}", props.locale_provider).ok();
        match (props.locale_provider.as_str(), &props.provider_locale) {
            ("icu", Some(locale)) => {
                write!(sql, " ICU_LOCALE = {}", quote_literal(locale)).ok();
            }
            ("builtin", Some(locale)) => {
                write!(sql, " BUILTIN_LOCALE = {}", quote_literal(locale)).ok();
            }
            _ => {}
        }
        if let (true, Some(rules)) = (version_num >= 160000, &props.icu_rules) {
            write!(sql, " ICU_RULES = {}", quote_literal(rules)).ok();
        }
    }
    if props.tablespace != "pg_default" {
        write!(sql, " TABLESPACE = {}", quote_ident(&props.tablespace)).ok();
    }
    write!(
        sql,
        " CONNECTION LIMIT = {} ALLOW_CONNECTIONS = false",
        props.connection_limit
    )
    .ok();
    sql
}

#[derive(Deserialize)]
struct SettingRight {
    name: String,
    context: Option<String>,
    may_set: bool,
}

/// Refuse (nothing changed) unless odoo-db's role can recreate the database with
/// exactly these properties: CREATEDB, acting as the owner, CREATE on the tablespace,
/// every setting (one of superuser context, or an unknown placeholder, needs a
/// superuser), signalling the sessions it must end. With `live` (the properties the
/// database has now, when it exists) every statement that will restore a property is
/// tried on it inside a transaction that is rolled back, which proves each one allowed.
pub async fn check_restorable(
    client: &Client,
    props: &DbProps,
    sessions: &[Session],
    live: Option<&DbProps>,
    version_num: i32,
) -> Result<()> {
    let names = setting_names(props);
    let row = client
        .query_typed_one(
            &render(RIGHTS_SQL, RIGHTS_BY_VERSION, version_num),
            &[
                (&props.owner, Type::TEXT),
                (&props.tablespace, Type::TEXT),
                (&names, Type::TEXT_ARRAY),
            ],
        )
        .await
        .context("checking what odoo-db's role may do")?;
    let superuser: bool = row.get("superuser");
    let agent: String = row.get("agent");
    refuse_missing_rights(&row, props, superuser, &agent)?;
    let rights: Vec<SettingRight> = from_json(row.get("settings"), "the settings' contexts")?;
    if !superuser {
        refuse_settings_it_cannot_set(&rights, &props.name, &agent)?;
        refuse_sessions_it_cannot_end(sessions, row.get("signal_backend"), &agent)?;
    }
    // Not pipelined with the query above: a failed trial leaves its transaction
    // aborted until the ROLLBACK that follows it.
    if let Some(live) = live {
        let statements = trial_statements(props, live)?;
        if !trial_at_once(client, &statements).await {
            trial_one_by_one(client, props, &statements).await?;
        }
    }
    Ok(())
}

/// The names of the database's settings and of its roles' settings in it, each once.
fn setting_names(props: &DbProps) -> Vec<String> {
    let mut names: Vec<String> = props
        .settings
        .iter()
        .chain(
            props
                .role_settings
                .iter()
                .flat_map(|role| role.settings.iter()),
        )
        .filter_map(|entry| entry.split_once('=').map(|(name, _)| name.to_string()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Refused when the owner or the tablespace does not exist, or when odoo-db's role
/// (unless a superuser) lacks CREATEDB, cannot act as the owner, or may not create in
/// the tablespace.
fn refuse_missing_rights(
    row: &tokio_postgres::Row,
    props: &DbProps,
    superuser: bool,
    agent: &str,
) -> Result<()> {
    // The caller adds which job was refused and that nothing was changed.
    let refuse = |rule: String| Err(Error::refused(rule));
    if !superuser && !row.get::<_, bool>("createdb") {
        return refuse(format!(
            "odoo-db's role {agent} lacks CREATEDB, so it could drop but not create the database again"
        ));
    }
    match row.get::<_, Option<bool>>("owner_superuser") {
        None => {
            return refuse(format!(
                "its owner {} does not exist on the server",
                props.owner
            ))
        }
        Some(true) if !superuser => {
            return refuse(format!(
                "its owner {} is a superuser, a role odoo-db's role {agent} cannot act for; \
                 a database of the platform is owned by its customer role",
                props.owner
            ))
        }
        _ => {}
    }
    let member = row.get::<_, Option<bool>>("owner_member").unwrap_or(false);
    if !superuser && !member && !row.get::<_, bool>("createrole") {
        return refuse(format!(
            "odoo-db's role {agent} is not a member of the owner {owner} and cannot grant itself \
             membership (no CREATEROLE); a superuser must run: GRANT {owner} TO {agent}",
            owner = props.owner
        ));
    }
    match row.get::<_, Option<bool>>("tablespace_create") {
        None => {
            return refuse(format!(
                "its tablespace {} does not exist",
                props.tablespace
            ))
        }
        Some(false) if !superuser => {
            return refuse(format!(
                "odoo-db's role {agent} has no CREATE privilege on tablespace {tablespace}, where \
                 the database lives; a superuser must run: GRANT CREATE ON TABLESPACE {tablespace} TO {agent}",
                tablespace = props.tablespace
            ))
        }
        _ => {}
    }
    Ok(())
}

/// Refused when odoo-db's role (no superuser) could not put a setting back after the drop.
fn refuse_settings_it_cannot_set(rights: &[SettingRight], name: &str, agent: &str) -> Result<()> {
    // The caller adds which job was refused and that nothing was changed.
    let refuse = |rule: String| Err(Error::refused(rule));
    for right in rights {
        let blocked = match right.context.as_deref() {
            None => Some(
                "is not a parameter this server knows (a placeholder of an extension not loaded); \
                 PostgreSQL lets only a superuser store such a setting"
                    .to_string(),
            ),
            Some(context @ ("superuser" | "superuser-backend")) if !right.may_set => Some(format!(
                "has context {context}: only a superuser, or a role granted SET ON PARAMETER {} \
                 (PostgreSQL 15+), may set it",
                right.name
            )),
            Some("postmaster" | "sighup" | "internal") => {
                Some("cannot be set per database or role at all".to_string())
            }
            _ => None,
        };
        if let Some(why) = blocked {
            return refuse(format!(
                "the setting {} {why}, so odoo-db's role {agent} could not put it back after the \
                 drop. Either a superuser grants that (GRANT SET ON PARAMETER {} TO {agent}), or \
                 the setting is removed (ALTER DATABASE {name} RESET {}, or ALTER ROLE … IN DATABASE \
                 {name} RESET {})",
                right.name, right.name, right.name, right.name
            ));
        }
    }
    Ok(())
}

/// Refused when odoo-db's role (no superuser) could not end a session it must end: any
/// other client's without pg_signal_backend, a superuser's ever.
fn refuse_sessions_it_cannot_end(
    sessions: &[Session],
    signal_backend: bool,
    agent: &str,
) -> Result<()> {
    // The caller adds which job was refused and that nothing was changed.
    let refuse = |rule: String| Err(Error::refused(rule));
    if !signal_backend {
        if let Some(session) = sessions.iter().find(|s| {
            s.user.as_deref() != Some(agent) && s.backend_type.as_deref() == Some("client backend")
        }) {
            return refuse(format!(
                "session pid {} of {} is connected and odoo-db's role {agent} is not a member of \
                 pg_signal_backend, so it cannot end it",
                session.pid,
                session.user.as_deref().unwrap_or("?")
            ));
        }
    }
    if let Some(session) = sessions.iter().find(|s| s.superuser) {
        return refuse(format!(
            "session pid {} of superuser {} ({}) is connected; odoo-db's role {agent} is not a \
             superuser and cannot end a superuser's session. End it (SELECT pg_terminate_backend({})) \
             or wait for it to disconnect, then run the command again",
            session.pid,
            session.user.as_deref().unwrap_or("?"),
            session.application.as_deref().unwrap_or(""),
            session.pid
        ));
    }
    Ok(())
}

/// Refuse (nothing changed) a database whose backup odoo-db's role could not restore
/// as it is: an extension only a superuser may create (`file_fdw`, created by one), an
/// object owned by another role than `owner` (the restore, run as the owner, would
/// make it the owner's or fail). Asked inside the database (`params` point at it) by
/// odoo-db's role reading the system catalogs only, with the search path pinned to
/// `pg_catalog` from the startup packet, so nothing of the customer's runs. A database
/// closed to connections (`ALLOW_CONNECTIONS false`) cannot be looked into, and cannot
/// be dumped either: the backup says so.
pub async fn check_contents(params: &ConnParams, owner: &str, version_num: i32) -> Result<()> {
    let name = params.dbname().to_string();
    let client = crate::pg::steprole::pinned_search_path(params)
        .connect(&crate::servers::admin_session())
        .await
        .with_context(|| format!("connecting to {name} to check what its backup holds"))?;
    let rows = client
        .query_typed(
            &render(CONTENTS_SQL, CONTENTS_BY_VERSION, version_num),
            &[(&owner, Type::TEXT)],
        )
        .await
        .with_context(|| format!("checking what a restore of {name} could not recreate"))?;
    if rows.is_empty() {
        return Ok(());
    }
    let problems: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    Err(Error::refused(format!(
        "its backup could not be restored by odoo-db's role, which acts as the owner {owner}: {}. \
         Either a superuser removes them (or gives them to {owner}), or you recreate it empty, \
         knowingly, with --no-backup",
        problems.join("; ")
    )))
}

/// Refuse (nothing changed) a backup that creates an extension odoo-db's role cannot
/// create on this server: not installed here, or not trusted (only a superuser may
/// create it; before PostgreSQL 13 no extension is trusted). plpgsql is in every
/// database already.
pub async fn check_extensions(client: &Client, names: &[String], version_num: i32) -> Result<()> {
    let rows = client
        .query_typed(
            &render(EXTENSIONS_SQL, EXTENSIONS_BY_VERSION, version_num),
            &[(&names, Type::TEXT_ARRAY)],
        )
        .await
        .context("checking the backup's extensions")?;
    if rows.is_empty() {
        return Ok(());
    }
    let problems: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    Err(Error::refused(format!(
        "the backup creates extension(s) odoo-db's role cannot create: {}. A superuser can \
         restore it by hand (pg_restore as the owner, after creating the extension)",
        problems.join(", ")
    )))
}

/// Every statement that will put a property back, tried on the existing database in a
/// transaction rolled back at the end: what PostgreSQL allows is decided by PostgreSQL.
/// Every statement that will put a property back, to be tried on the existing database
/// (see [`check_restorable`]). Membership in the owner is granted first when missing,
/// as the job will do.
fn trial_statements(props: &DbProps, live: &DbProps) -> Result<Vec<String>> {
    let database = quote_ident(&props.name);
    let owner = quote_literal(&props.owner);
    let mut statements = vec![format!(
        "DO $grant$ BEGIN IF NOT pg_has_role(current_user, {owner}, 'MEMBER') THEN \
         EXECUTE format('GRANT %I TO CURRENT_USER', {owner}); END IF; END $grant$"
    )];
    statements.push(format!("ALTER DATABASE {database} ALLOW_CONNECTIONS false"));
    statements.push(format!(
        "ALTER DATABASE {database} CONNECTION LIMIT {}",
        props.connection_limit
    ));
    statements.extend(settings_statements(props)?);
    statements.extend(comment_statement(props));
    statements.extend(acl_statements(props, live.acl.as_deref()));
    Ok(statements)
}

/// All trial statements in one transaction, one round trip, rolled back: true when
/// every one was allowed.
async fn trial_at_once(client: &Client, statements: &[String]) -> bool {
    let all = format!(
        "BEGIN; SET LOCAL lock_timeout = '10s'; {}; ROLLBACK",
        statements.join(";\n")
    );
    if client.batch_execute(&all).await.is_ok() {
        return true;
    }
    // The failed batch left its transaction open and aborted.
    let _ = client.batch_execute("ROLLBACK").await;
    false
}

/// The trial again, statement by statement, to name the one that fails.
async fn trial_one_by_one(client: &Client, props: &DbProps, statements: &[String]) -> Result<()> {
    client
        .batch_execute("BEGIN; SET LOCAL lock_timeout = '10s'")
        .await
        .context("starting the trial of the restore statements")?;
    let mut failure = None;
    for statement in statements {
        if let Err(error) = client.batch_execute(statement).await {
            failure = Some((statement.clone(), Error::from(error)));
            break;
        }
    }
    client
        .batch_execute("ROLLBACK")
        .await
        .context("rolling back the trial of the restore statements")?;
    match failure {
        None => Ok(()),
        Some((statement, error)) if error.is_sqlstate(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) || error.is_sqlstate(&tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED) || error.is_sqlstate(&tokio_postgres::error::SqlState::CANT_CHANGE_RUNTIME_PARAM) => {
            Err(Error::refused(format!(
                "odoo-db's role could not put a property of {} back after the drop: `{statement}` \
                 fails with {} (a superuser can grant what is missing, or the property can be removed)",
                props.name,
                error.root_message()
            )))
        }
        Some((statement, error)) => Err(error.context(format!(
            "{}: trying `{statement}` (rolled back, nothing changed)",
            props.name
        ))),
    }
}

/// The properties as the plan shows them, one per line.
pub fn describe(props: &DbProps) -> String {
    let mut text = String::new();
    let mut line = |label: &str, value: String| {
        writeln!(text, "  {label:<22} {value}").ok();
    };
    line("owner", props.owner.clone());
    line("encoding", props.encoding.clone());
    line("collation", props.collate.clone());
    line("ctype", props.ctype.clone());
    let provider = match (&props.provider_locale, &props.icu_rules) {
        (Some(locale), Some(rules)) => {
            format!("{} (locale {locale}, rules {rules})", props.locale_provider)
        }
        (Some(locale), None) => format!("{} (locale {locale})", props.locale_provider),
        _ => props.locale_provider.clone(),
    };
    line("locale provider", provider);
    line("tablespace", props.tablespace.clone());
    line(
        "connection limit",
        if props.connection_limit < 0 {
            "none (-1)".to_string()
        } else {
            props.connection_limit.to_string()
        },
    );
    line(
        "ACL",
        props
            .acl_text
            .clone()
            .unwrap_or_else(|| format!("default (NULL: {})", props.effective_acl)),
    );
    line(
        "database settings",
        if props.settings.is_empty() {
            "none".to_string()
        } else {
            props.settings.join("; ")
        },
    );
    if props.role_settings.is_empty() {
        line("role settings", "none".to_string());
    }
    for role in &props.role_settings {
        line(
            "role settings",
            format!("{}: {}", role.role, role.settings.join("; ")),
        );
    }
    if let Some(comment) = &props.comment {
        line("comment", comment.clone());
    }
    if !props.allow_connections {
        line("allow connections", "false (kept)".to_string());
    }
    text
}

/// Sessions and size, for the plan.
pub fn describe_live(inspection: &Inspection) -> String {
    let mut text = String::new();
    writeln!(
        text,
        "  {:<22} {}",
        "size",
        format_bytes(inspection.size_bytes.max(0) as u64)
    )
    .ok();
    if inspection.sessions.is_empty() {
        writeln!(text, "  {:<22} none", "sessions").ok();
    }
    for session in &inspection.sessions {
        writeln!(
            text,
            "  {:<22} pid {} {} {} from {} ({})",
            "session",
            session.pid,
            session.user.as_deref().unwrap_or("-"),
            session
                .application
                .as_deref()
                .filter(|a| !a.is_empty())
                .unwrap_or("-"),
            session.client,
            session
                .state
                .as_deref()
                .or(session.backend_type.as_deref())
                .unwrap_or("-")
        )
        .ok();
    }
    text
}

/// What differs between the recorded properties and the new database's (empty when
/// it was recreated faithfully). ACLs compare by meaning (NULL = the default).
pub fn differences(expected: &DbProps, actual: &DbProps) -> Vec<String> {
    COMPARED
        .iter()
        .filter_map(|(what, value)| {
            let (a, b) = (value(expected), value(actual));
            (a != b).then(|| format!("{what}: expected {a}, found {b}"))
        })
        .collect()
}

/// A property as [`differences`] shows it.
type Shown = fn(&DbProps) -> String;

/// The properties [`differences`] compares.
const COMPARED: &[(&str, Shown)] = &[
    ("owner", |p| p.owner.clone()),
    ("encoding", |p| p.encoding.clone()),
    ("collation", |p| p.collate.clone()),
    ("ctype", |p| p.ctype.clone()),
    ("locale provider", |p| p.locale_provider.clone()),
    ("provider locale", |p| format!("{:?}", p.provider_locale)),
    ("ICU rules", |p| format!("{:?}", p.icu_rules)),
    ("tablespace", |p| p.tablespace.clone()),
    ("connection limit", |p| p.connection_limit.to_string()),
    ("allow connections", |p| p.allow_connections.to_string()),
    ("ACL", |p| p.effective_acl.clone()),
    ("comment", |p| format!("{:?}", p.comment)),
    ("database settings", |p| p.settings.join("; ")),
    ("role settings", |p| format!("{:?}", p.role_settings)),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// What each version got before [`crate::sqltemplate`] filled the templates: the
    /// same `replace` calls, chosen by the same version tests.
    #[test]
    fn each_version_gets_the_sql_it_always_got() {
        for major in 12..=18 {
            let v = major * 10000 + 4;
            let provider = if v >= 150000 {
                "d.datlocprovider::text"
            } else {
                "'c'::text"
            };
            let locale = match v {
                v if v >= 170000 => "d.datlocale::text",
                v if v >= 150000 => "d.daticulocale::text",
                _ => "NULL::text",
            };
            let rules = if v >= 160000 {
                "d.daticurules::text"
            } else {
                "NULL::text"
            };
            let inspect = INSPECT_SQL
                .replace("{locale_provider}", provider)
                .replace("{icu_locale}", locale)
                .replace("{icu_rules}", rules);
            assert_eq!(inspect_sql(v), inspect, "PostgreSQL {major}");
            let set_privilege = if v >= 150000 {
                "has_parameter_privilege(p.name, 'SET')"
            } else {
                "false"
            };
            assert_eq!(
                render(RIGHTS_SQL, RIGHTS_BY_VERSION, v),
                RIGHTS_SQL.replace("{set_privilege}", set_privilege),
                "PostgreSQL {major}"
            );
            let trusted = if v >= 130000 { "v.trusted" } else { "false" };
            assert_eq!(
                render(CONTENTS_SQL, CONTENTS_BY_VERSION, v),
                CONTENTS_SQL.replace("{trusted}", trusted),
                "PostgreSQL {major}"
            );
            let trusted = if v >= 130000 {
                "coalesce(v.trusted, false)"
            } else {
                "false"
            };
            assert_eq!(
                render(EXTENSIONS_SQL, EXTENSIONS_BY_VERSION, v),
                EXTENSIONS_SQL.replace("{trusted}", trusted),
                "PostgreSQL {major}"
            );
        }
        crate::sqltemplate::assert_complete(INSPECT_SQL, INSPECT_BY_VERSION);
        crate::sqltemplate::assert_complete(RIGHTS_SQL, RIGHTS_BY_VERSION);
        crate::sqltemplate::assert_complete(CONTENTS_SQL, CONTENTS_BY_VERSION);
        crate::sqltemplate::assert_complete(EXTENSIONS_SQL, EXTENSIONS_BY_VERSION);
    }

    fn props() -> DbProps {
        DbProps {
            name: "x_integration".into(),
            owner: "x_integration".into(),
            encoding: "UTF8".into(),
            collate: "C.UTF-8".into(),
            ctype: "C.UTF-8".into(),
            locale_provider: "libc".into(),
            provider_locale: None,
            icu_rules: None,
            tablespace: "pg_default".into(),
            connection_limit: -1,
            allow_connections: true,
            acl: None,
            acl_text: None,
            effective_acl: "{=Tc/x_integration,x_integration=CTc/x_integration}".into(),
            comment: None,
            settings: vec![],
            role_settings: vec![],
        }
    }

    #[test]
    fn differences_name_each_property_that_differs_in_order() {
        assert!(differences(&props(), &props()).is_empty());
        let mut actual = props();
        actual.owner = "someone_else".into();
        actual.connection_limit = 5;
        actual.comment = Some("moved".into());
        assert_eq!(
            differences(&props(), &actual),
            [
                "owner: expected x_integration, found someone_else",
                "connection limit: expected -1, found 5",
                "comment: expected None, found Some(\"moved\")",
            ]
        );
    }

    #[test]
    fn settings_after_the_data_replace_exactly_what_is_there() {
        let mut target = props();
        target.settings = vec!["default_transaction_read_only=on".into()];
        target.role_settings = vec![RoleSettings {
            role: "x_integration".into(),
            settings: vec!["statement_timeout=1ms".into()],
        }];
        let empty = props();
        assert_eq!(
            settings_reset_statements(&empty, &target).unwrap(),
            vec![
                "ALTER DATABASE \"x_integration\" SET \"default_transaction_read_only\" = 'on'",
                "ALTER ROLE \"x_integration\" IN DATABASE \"x_integration\" SET \"statement_timeout\" = '1ms'",
            ]
        );
        // A rerun that finds them in place changes nothing.
        assert!(settings_reset_statements(&target, &target)
            .unwrap()
            .is_empty());
        // Anything else is reset first, so the order comes back too.
        let mut other = target.clone();
        other.settings = vec![
            "work_mem=64kB".into(),
            "default_transaction_read_only=on".into(),
        ];
        let statements = settings_reset_statements(&other, &target).unwrap();
        assert_eq!(statements[0], "ALTER DATABASE \"x_integration\" RESET ALL");
        assert_eq!(
            statements[1],
            "ALTER ROLE \"x_integration\" IN DATABASE \"x_integration\" RESET ALL"
        );
        assert_eq!(statements.len(), 4);
    }

    #[test]
    fn list_settings_are_given_back_element_by_element() {
        assert_eq!(
            setting_assignment("search_path=\"$user\", public").unwrap(),
            "\"search_path\" = '$user', 'public'"
        );
        assert_eq!(
            setting_assignment("search_path=\"a,b\", \"q\"\"x\"").unwrap(),
            "\"search_path\" = 'a,b', 'q\"x'"
        );
        assert_eq!(
            setting_assignment("search_path=\"\"").unwrap(),
            "\"search_path\" = ''"
        );
        assert_eq!(
            setting_assignment("work_mem=64MB").unwrap(),
            "\"work_mem\" = '64MB'"
        );
        assert_eq!(
            setting_assignment("odoo.x=it's=1").unwrap(),
            "\"odoo.x\" = 'it''s=1'"
        );
    }

    #[test]
    fn a_null_acl_stays_null_and_others_are_rebuilt_in_order() {
        let mut p = props();
        assert!(acl_statements(&p, None).is_empty());
        p.acl = Some(vec![
            AclItem {
                grantee: Some("x_integration".into()),
                grantor: "x_integration".into(),
                privileges: vec!["CREATE".into(), "CONNECT".into()],
                grantable: vec![],
            },
            AclItem {
                grantee: Some("reader".into()),
                grantor: "x_integration".into(),
                privileges: vec!["CONNECT".into()],
                grantable: vec!["TEMPORARY".into()],
            },
        ]);
        let statements = acl_statements(&p, None);
        assert_eq!(
            statements,
            vec![
                "REVOKE ALL ON DATABASE \"x_integration\" FROM PUBLIC CASCADE",
                "REVOKE ALL ON DATABASE \"x_integration\" FROM \"x_integration\" CASCADE",
                "GRANT CREATE, CONNECT ON DATABASE \"x_integration\" TO \"x_integration\"",
                "GRANT CONNECT ON DATABASE \"x_integration\" TO \"reader\"",
                "GRANT TEMPORARY ON DATABASE \"x_integration\" TO \"reader\" WITH GRANT OPTION",
            ]
        );
    }

    #[test]
    fn create_names_every_property_for_the_version() {
        let mut p = props();
        p.locale_provider = "icu".into();
        p.provider_locale = Some("de-DE".into());
        p.connection_limit = 7;
        p.tablespace = "fast".into();
        let sql = create_statement(&p, 150004);
        assert!(sql.contains("TEMPLATE = template0"), "{sql}");
        assert!(
            sql.contains("LOCALE_PROVIDER = icu ICU_LOCALE = 'de-DE'"),
            "{sql}"
        );
        assert!(sql.contains("TABLESPACE = \"fast\""), "{sql}");
        assert!(
            sql.contains("CONNECTION LIMIT = 7 ALLOW_CONNECTIONS = false"),
            "{sql}"
        );
        assert!(!create_statement(&p, 140000).contains("LOCALE_PROVIDER"));
    }
}
