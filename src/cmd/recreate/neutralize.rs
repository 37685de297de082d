//! A refresh's neutralization step: inside the restored copy, logged in as a throwaway
//! role whose only membership is the integration role (production's own functions and
//! triggers came along in the dump, and run when rows are updated), the copy's modules
//! and Odoo version are read and their neutralization ([`crate::odoo::neutralize`])
//! is applied in one transaction. The step is recorded only after the commit, so a run
//! killed anywhere before applies it again (every statement can run twice).

use serde_json::json;

use super::{Job, Step};
use crate::error::{Context, Error, Result};
use crate::odoo::{self, neutralize};
use crate::pg::backup;
use crate::pg::dbprops::DbProps;
use crate::pg::steprole::{self, Connect, StepRole};
use crate::servers;

impl Job {
    /// Neutralize the restored copy (or record that `--no-neutralize` skipped it).
    pub(super) async fn neutralize(&mut self, props: &DbProps) -> Result<()> {
        let work = self.refresh.clone().expect("a refresh neutralizes");
        if !work.neutralize {
            return self
                .advance(Step::Neutralized, json!({ "skipped": "--no-neutralize" }))
                .await;
        }
        self.lock.ensure_held("the neutralization").await?;
        steprole::drop_leftovers(
            &self.server,
            &self.catalog,
            &self.params,
            &self.cluster,
            &self.name,
        )
        .await?;
        let role = StepRole::create(
            &self.server,
            &self.catalog,
            &self.cluster,
            &self.name,
            &props.owner,
            "neutralization",
            Connect::Granted,
        )
        .await?;
        let applied = self.apply_as(&role, work.web_base_url.as_deref()).await;
        role.drop(&self.server, &self.catalog, &self.params).await?;
        let statements = applied?;
        fail::fail_point!("refresh-after-neutralize");
        self.advance(Step::Neutralized, json!({ "statements": statements }))
            .await
    }

    /// Read the copy's modules and apply their neutralization, logged in as `role`;
    /// returns the number of statements.
    async fn apply_as(&self, role: &StepRole, web_base_url: Option<&str>) -> Result<usize> {
        let login = steprole::pinned_search_path(
            &role
                .login(&self.params)
                .with_startup_options(&backup::restore_session_options(self.server_major())),
        );
        let mut client = login
            .connect(&servers::admin_session())
            .await
            .with_context(|| format!("connecting to {} as {}", self.name, role.name))?;
        let facts = odoo::inspect(&client).await?.ok_or_else(|| {
            Error::failed(format!(
                "{} has no ir_module_module after the restore: it is no Odoo database, nothing was neutralized",
                self.name
            ))
        })?;
        let plan = neutralize::plan(facts.major, &facts.installed, web_base_url)?;
        if !plan.unknown_covered.is_empty() {
            return Err(Error::failed(format!(
                "the copy has modules whose neutralization odoo-db does not know: {}; nothing was neutralized",
                plan.unknown_covered.join(", ")
            )));
        }
        tracing::info!(
            "neutralizing {} (Odoo {}, {} statements) as {}",
            self.name,
            facts.major,
            plan.statements.len(),
            role.name
        );
        neutralize::apply(&mut client, &plan).await?;
        Ok(plan.statements.len())
    }
}
