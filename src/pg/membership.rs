//! Acting as a database's owner: what odoo-db's role must be granted to `SET ROLE` to
//! a customer's role and use its privileges, and the refusal to act as any role that
//! would give it more than a customer's rights. Provision, adopt, recreate and restore
//! all need it before they create, alter or fill a database owned by that role.

use tokio_postgres::Client;

use crate::error::{Context, Error, Result};
use crate::pg::quote::quote_ident;
use crate::sqltemplate::{render, Placeholder};

/// CREATE DATABASE … OWNER x needs odoo-db's role to be able to act as x: a member of x
/// up to PostgreSQL 15; from 16 on, able to `SET ROLE x` (the SET option), and, to
/// connect to a database closed to PUBLIC and to grant as its owner, inheriting x's
/// privileges (the INHERIT option). PostgreSQL 16+ gives the creator of a role ADMIN
/// OPTION on it but neither SET nor INHERIT (unless `createrole_self_grant` says so),
/// so odoo-db grants itself exactly what is missing on the roles it holds ADMIN on.
///
/// Never on a role that would give odoo-db more than a customer's rights: a superuser,
/// a role with CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS, or one that is or
/// belongs (directly or through other roles) to a built-in `pg_*` role is refused
/// (exit 2), naming it and why, even if the membership exists already: this is the last
/// line of defence of recreate, restore and adopt against an owner changed behind
/// odoo-db's back (`ALTER DATABASE … OWNER TO pg_execute_server_program`).
pub async fn act_as_owner(client: &Client, role: &str) -> Result<()> {
    plan_act_as_owner(client, role, false)
        .await?
        .apply(client)
        .await
}

/// What odoo-db's role must be granted before it can act as a role, decided without
/// changing anything (see [`act_as_owner`]); [`OwnerAccess::apply`] grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerAccess {
    pub role: String,
    /// odoo-db's role (`current_user`).
    pub agent: String,
    /// The GRANT odoo-db runs itself; None when nothing is missing.
    pub grant: Option<String>,
    server_version_num: i32,
}

/// The attributes of a role or of one it belongs to that make it more than a customer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleFacts {
    pub name: String,
    pub superuser: bool,
    pub createrole: bool,
    pub createdb: bool,
    pub replication: bool,
    pub bypassrls: bool,
    /// A built-in role (`pg_*`, or any role of the bootstrap catalog).
    pub builtin: bool,
}

/// Why odoo-db must never act as `role`, given the facts of `role` itself (first) and of
/// every role it belongs to, directly or not; None when it is a plain role.
pub fn refusal_reasons(role: &str, facts: &[RoleFacts]) -> Option<String> {
    let reasons: Vec<String> = facts
        .iter()
        .filter_map(|fact| {
            let attributes: Vec<&str> = [
                (fact.superuser, "SUPERUSER"),
                (fact.createrole, "CREATEROLE"),
                (fact.createdb, "CREATEDB"),
                (fact.replication, "REPLICATION"),
                (fact.bypassrls, "BYPASSRLS"),
            ]
            .into_iter()
            .filter_map(|(set, attribute)| set.then_some(attribute))
            .collect();
            let mut parts = Vec::new();
            if fact.builtin {
                parts.push("is a built-in role".to_string());
            }
            if !attributes.is_empty() {
                parts.push(format!("has {}", attributes.join(" and ")));
            }
            if parts.is_empty() {
                return None;
            }
            let parts = parts.join(" and ");
            Some(if fact.name == role {
                format!("role {role} {parts}")
            } else {
                format!("role {role} is a member of {} (directly or through other roles), which {parts}", fact.name)
            })
        })
        .collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// The role and every role it belongs to, directly or through others.
const ROLE_AND_ITS_GROUPS: &str = include_str!("../../sql/roles/role_and_its_groups.sql");

/// Decide, changing nothing, what odoo-db's role must be granted to act as `role`;
/// refused when it must never act as it, or when it cannot grant itself what it
/// needs (then the message holds the one GRANT a superuser runs). `need_admin`: the
/// role is not odoo-db's creation (adopt) and odoo-db must also be able to ALTER and
/// DROP it later, which PostgreSQL 16+ allows only with ADMIN OPTION.
pub async fn plan_act_as_owner(
    client: &Client,
    role: &str,
    need_admin: bool,
) -> Result<OwnerAccess> {
    let agent = read_agent(client).await?;
    let mut access = OwnerAccess {
        role: role.to_string(),
        agent: agent.name.clone(),
        grant: None,
        server_version_num: agent.server_version_num,
    };
    if role == agent.name {
        return Ok(access);
    }
    refuse_more_than_a_customer(client, role, &agent.name).await?;
    let held = read_held_privileges(client, role, agent.server_version_num).await?;
    let (missing, can_grant) = missing_privileges(&agent, &held, need_admin);
    if missing.is_empty() {
        return Ok(access);
    }
    let needs_superuser = !can_grant || missing.contains(&"ADMIN");
    if needs_superuser {
        let statement = superuser_grant(role, &agent.name, agent.server_version_num);
        return Err(Error::refused(format!(
            "odoo-db's role {agent} cannot act for role {role} (missing: {}) and cannot grant itself what it \
             needs, as it does not hold ADMIN OPTION on {role} (a role odoo-db did not create). A superuser \
             must run once: {statement}; then run the command again",
            missing.join(", "),
            agent = agent.name,
        )));
    }
    access.grant = Some(format!(
        "GRANT {} TO {}{}",
        quote_ident(role),
        quote_ident(&agent.name),
        SELF_GRANT_OPTIONS.for_version(agent.server_version_num)
    ));
    Ok(access)
}

/// odoo-db's own role (`current_user`) and the server it is on.
struct Agent {
    name: String,
    server_version_num: i32,
    superuser: bool,
    createrole: bool,
}

/// What odoo-db's role holds on the role it would act as. Up to PostgreSQL 15 SET and
/// INHERIT come with membership.
struct HeldPrivileges {
    member: bool,
    can_set: bool,
    inherits: bool,
    admin: bool,
}

async fn read_agent(client: &Client) -> Result<Agent> {
    let row = client
        .query_one(
            "SELECT current_user::text, current_setting('server_version_num')::int,
                    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                    (SELECT rolcreaterole FROM pg_roles WHERE rolname = current_user)",
            &[],
        )
        .await
        .context("reading odoo-db's own role")?;
    Ok(Agent {
        name: row.get(0),
        server_version_num: row.get(1),
        superuser: row.get(2),
        createrole: row.get(3),
    })
}

/// Refused when `role` does not exist, or when it or a role it belongs to is more than
/// a customer (see [`refusal_reasons`]).
async fn refuse_more_than_a_customer(client: &Client, role: &str, agent: &str) -> Result<()> {
    let facts: Vec<RoleFacts> = client
        .query(ROLE_AND_ITS_GROUPS, &[&role])
        .await
        .with_context(|| format!("reading the attributes and memberships of role {role}"))?
        .iter()
        .map(|row| RoleFacts {
            name: row.get(0),
            superuser: row.get(1),
            createrole: row.get(2),
            createdb: row.get(3),
            replication: row.get(4),
            bypassrls: row.get(5),
            builtin: row.get(6),
        })
        .collect();
    if facts.first().is_none_or(|fact| fact.name != role) {
        return Err(Error::refused(format!(
            "role {role} does not exist on this server, so odoo-db cannot act as it"
        )));
    }
    if let Some(reasons) = refusal_reasons(role, &facts) {
        return Err(Error::refused(format!(
            "odoo-db's role {agent} refuses to act as role {role}: {reasons}. Acting as it would give odoo-db \
             (and whoever controls {role}) more than a customer's rights. A customer database must be owned \
             by its own plain LOGIN role: check who changed it (ALTER DATABASE … OWNER TO {role}) and put \
             the recorded owner back"
        )));
    }
    Ok(())
}

async fn read_held_privileges(
    client: &Client,
    role: &str,
    server_version_num: i32,
) -> Result<HeldPrivileges> {
    let row = client
        .query_one(
            &render(HELD_SQL, HELD_BY_VERSION, server_version_num),
            &[&role],
        )
        .await?;
    Ok(if row.len() == 4 {
        HeldPrivileges {
            member: row.get(0),
            can_set: row.get(1),
            inherits: row.get(2),
            admin: row.get(3),
        }
    } else {
        let member: bool = row.get(0);
        HeldPrivileges {
            member,
            can_set: member,
            inherits: member,
            admin: row.get(1),
        }
    })
}

/// What odoo-db's role lacks to act as the role (PostgreSQL 16+: the SET and INHERIT
/// options, and ADMIN when `need_admin`; before: membership), and whether it may grant
/// that to itself.
fn missing_privileges(
    agent: &Agent,
    held: &HeldPrivileges,
    need_admin: bool,
) -> (Vec<&'static str>, bool) {
    if agent.server_version_num >= 160000 {
        let mut missing = Vec::new();
        if !held.can_set {
            missing.push("SET");
        }
        if !held.inherits {
            missing.push("INHERIT");
        }
        if need_admin && !held.admin && !agent.superuser {
            missing.push("ADMIN");
        }
        (missing, agent.superuser || held.admin)
    } else {
        let missing = if held.member {
            Vec::new()
        } else {
            vec!["membership"]
        };
        (missing, agent.superuser || agent.createrole || held.admin)
    }
}

/// What odoo-db's role holds on `$1`; PostgreSQL 16+ tells SET and USAGE (INHERIT)
/// apart from membership.
const HELD_SQL: &str = include_str!("../../sql/roles/held_privileges.sql");

/// The version-dependent parts of [`HELD_SQL`].
const HELD_BY_VERSION: &[Placeholder] = &[Placeholder {
    name: "set_and_usage",
    oldest: "",
    since: &[(
        160000,
        "
                        pg_has_role(current_user, $1::text::name, 'SET'),
                        pg_has_role(current_user, $1::text::name, 'USAGE'),",
    )],
}];

/// What follows `GRANT role TO agent` when odoo-db grants itself the use of a role.
const SELF_GRANT_OPTIONS: Placeholder = Placeholder {
    name: "self_grant_options",
    oldest: "",
    since: &[(160000, " WITH INHERIT TRUE, SET TRUE")],
};

/// What follows `GRANT role TO agent` when a superuser grants odoo-db's role the use of
/// a role, and ADMIN OPTION on it.
const SUPERUSER_GRANT_OPTIONS: Placeholder = Placeholder {
    name: "superuser_grant_options",
    oldest: "",
    since: &[(160000, " WITH ADMIN OPTION, INHERIT TRUE, SET TRUE")],
};

/// The check that odoo-db's role can act as `$1` after its grant.
const ACTING_HOLDS: Placeholder = Placeholder {
    name: "acting_holds",
    oldest: "SELECT pg_has_role(current_user, $1::text::name, 'MEMBER')",
    since: &[(
        160000,
        "SELECT pg_has_role(current_user, $1::text::name, 'SET') AND pg_has_role(current_user, $1::text::name, 'USAGE')",
    )],
};

/// The GRANT a superuser runs so that odoo-db's role can act as, alter and drop `role`.
pub fn superuser_grant(role: &str, agent: &str, server_version_num: i32) -> String {
    format!(
        "GRANT {} TO {}{}",
        quote_ident(role),
        quote_ident(agent),
        SUPERUSER_GRANT_OPTIONS.for_version(server_version_num)
    )
}

impl OwnerAccess {
    /// Grant what [`plan_act_as_owner`] found missing, then check that it holds.
    pub async fn apply(&self, client: &Client) -> Result<()> {
        let Some(grant) = &self.grant else {
            return Ok(());
        };
        match client.batch_execute(grant).await {
            Ok(()) => {}
            Err(error)
                if error.code()
                    == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                return Err(Error::refused(format!(
                    "odoo-db's role {agent} cannot act for role {role} ({}); a superuser must run once: {}; then run the command again",
                    crate::error::describe_pg_error(&error),
                    superuser_grant(&self.role, &self.agent, self.server_version_num),
                    agent = self.agent,
                    role = self.role,
                )));
            }
            Err(error) => {
                return Err(Error::from(error).context(format!(
                    "granting odoo-db's role the use of role {}",
                    self.role
                )))
            }
        }
        tracing::info!(
            "granted odoo-db's role {} the use of role {} ({grant})",
            self.agent,
            self.role
        );
        let check = ACTING_HOLDS.for_version(self.server_version_num);
        let holds: bool = client.query_one(check, &[&self.role]).await?.get(0);
        if !holds {
            return Err(Error::failed(format!(
                "after {grant}, odoo-db's role {} still cannot act as role {} (is {} NOINHERIT?)",
                self.agent, self.role, self.agent
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What each version got before these statements were templated: the same text,
    /// chosen by the same `version >= 160000` tests.
    #[test]
    fn each_version_gets_the_statements_it_always_got() {
        crate::sqltemplate::assert_complete(HELD_SQL, HELD_BY_VERSION);
        for major in 12..=18 {
            let version = major * 10000 + 4;
            let held = if version >= 160000 {
                "SELECT pg_has_role(current_user, $1::text::name, 'MEMBER'),
                        pg_has_role(current_user, $1::text::name, 'SET'),
                        pg_has_role(current_user, $1::text::name, 'USAGE'),
                        pg_has_role(current_user, $1::text::name, 'MEMBER WITH ADMIN OPTION')"
            } else {
                "SELECT pg_has_role(current_user, $1::text::name, 'MEMBER'),
                        pg_has_role(current_user, $1::text::name, 'MEMBER WITH ADMIN OPTION')"
            };
            assert_eq!(
                crate::sqltemplate::statement(&render(HELD_SQL, HELD_BY_VERSION, version)),
                held,
                "PostgreSQL {major}"
            );
            let check = if version >= 160000 {
                "SELECT pg_has_role(current_user, $1::text::name, 'SET') AND pg_has_role(current_user, $1::text::name, 'USAGE')"
            } else {
                "SELECT pg_has_role(current_user, $1::text::name, 'MEMBER')"
            };
            assert_eq!(
                ACTING_HOLDS.for_version(version),
                check,
                "PostgreSQL {major}"
            );
            let base = "GRANT \"calm_owl_0001\" TO \"odoo-db\"";
            let superuser = if version >= 160000 {
                format!("{base} WITH ADMIN OPTION, INHERIT TRUE, SET TRUE")
            } else {
                base.to_string()
            };
            assert_eq!(
                superuser_grant("calm_owl_0001", "odoo-db", version),
                superuser,
                "PostgreSQL {major}"
            );
            let own = if version >= 160000 {
                " WITH INHERIT TRUE, SET TRUE"
            } else {
                ""
            };
            assert_eq!(
                SELF_GRANT_OPTIONS.for_version(version),
                own,
                "PostgreSQL {major}"
            );
        }
    }

    fn plain(name: &str) -> RoleFacts {
        RoleFacts {
            name: name.to_string(),
            ..RoleFacts::default()
        }
    }

    #[test]
    fn only_plain_roles_may_be_acted_as() {
        assert_eq!(
            refusal_reasons("calm_owl_0001", &[plain("calm_owl_0001")]),
            None
        );
        assert_eq!(
            refusal_reasons(
                "calm_owl_0001",
                &[plain("calm_owl_0001"), plain("customers")]
            ),
            None
        );
        let creator = RoleFacts {
            createrole: true,
            ..plain("x")
        };
        assert_eq!(
            refusal_reasons("x", &[creator]).unwrap(),
            "role x has CREATEROLE"
        );
        for (fact, says) in [
            (
                RoleFacts {
                    superuser: true,
                    ..plain("x")
                },
                "has SUPERUSER",
            ),
            (
                RoleFacts {
                    createdb: true,
                    ..plain("x")
                },
                "has CREATEDB",
            ),
            (
                RoleFacts {
                    replication: true,
                    ..plain("x")
                },
                "has REPLICATION",
            ),
            (
                RoleFacts {
                    bypassrls: true,
                    ..plain("x")
                },
                "has BYPASSRLS",
            ),
            (
                RoleFacts {
                    builtin: true,
                    ..plain("x")
                },
                "is a built-in role",
            ),
        ] {
            let reasons = refusal_reasons("x", &[fact]).unwrap();
            assert!(reasons.contains(says), "{reasons}");
        }
        // Through nested membership: x ∈ group ∈ pg_read_server_files.
        let reasons = refusal_reasons(
            "x",
            &[
                plain("x"),
                plain("group"),
                RoleFacts {
                    builtin: true,
                    ..plain("pg_read_server_files")
                },
            ],
        )
        .unwrap();
        assert_eq!(
            reasons,
            "role x is a member of pg_read_server_files (directly or through other roles), which is a built-in role"
        );
    }

    #[test]
    fn the_superuser_grant_gives_admin_on_16_and_later() {
        assert_eq!(
            superuser_grant("calm_owl_0001", "odoo_db_admin", 150004),
            "GRANT \"calm_owl_0001\" TO \"odoo_db_admin\""
        );
        assert_eq!(
            superuser_grant("calm_owl_0001", "odoo_db_admin", 180000),
            "GRANT \"calm_owl_0001\" TO \"odoo_db_admin\" WITH ADMIN OPTION, INHERIT TRUE, SET TRUE"
        );
    }
}
