//! The neutralization of a copy of an Odoo production database: per installed module
//! and Odoo major version, the statements that stop it from acting as production (no
//! mail sent, no scheduled job run, no payment taken, no third-party token used),
//! applied in one transaction with the customer's triggers disabled.
//!
//! The facts come from Odoo's own `data/neutralize.sql` files; the SQL is odoo-db's
//! (`sql/neutralize/`, one file per module, version differences templated), written
//! so that running it twice changes nothing more (a rerun after a crash applies it
//! again). A module whose upstream neutralization odoo-db does not implement is
//! refused by the caller, not skipped.

use tokio_postgres::Client;

use crate::error::{Context, Error, Result};
use crate::sqltemplate::{render, Placeholder};

/// The Odoo majors whose schemas the SQL is written for.
pub(crate) const SUPPORTED: std::ops::RangeInclusive<u32> = 14..=18;

/// A module's SQL and what differs between Odoo majors (a placeholder's versions are
/// Odoo majors here, not PostgreSQL's).
struct ModuleSql {
    module: &'static str,
    /// The oldest Odoo major whose schema the SQL is known for: on an older one the
    /// module is refused like a module odoo-db does not know.
    oldest_major: u32,
    sql: &'static str,
    placeholders: &'static [Placeholder],
}

const PROVIDER_TABLE: Placeholder = Placeholder {
    name: "provider_table",
    oldest: "payment_acquirer",
    since: &[(16, "payment_provider")],
};

/// Shared by every carrier integration (see the file for why not per carrier).
const DELIVERY_CARRIER: &str = include_str!("../../sql/neutralize/delivery_carrier.sql");

/// Shared by every payment terminal integration (see the file for why not per terminal).
const POS_TERMINAL: &str = include_str!("../../sql/neutralize/pos_terminal.sql");

const MODULES: &[ModuleSql] = &[
    ModuleSql {
        module: "base",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/base.sql"),
        placeholders: &[
            Placeholder {
                name: "auth_column",
                oldest: "",
                since: &[(15, "smtp_authentication, ")],
            },
            Placeholder {
                name: "auth_value",
                oldest: "",
                since: &[(15, "'login', ")],
            },
            Placeholder {
                name: "webhooks",
                oldest: "",
                since: &[(
                    17,
                    "UPDATE public.ir_act_server SET webhook_url = NULL WHERE webhook_url IS NOT NULL;",
                )],
            },
        ],
    },
    ModuleSql {
        module: "mail",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/mail.sql"),
        placeholders: &[Placeholder {
            name: "fetchmail",
            oldest: "",
            since: &[(16, include_str!("../../sql/neutralize/fetchmail.sql"))],
        }],
    },
    ModuleSql {
        module: "fetchmail",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/fetchmail.sql"),
        placeholders: &[],
    },
    ModuleSql {
        module: "payment",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment.sql"),
        placeholders: &[PROVIDER_TABLE],
    },
    ModuleSql {
        module: "payment_stripe",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_stripe.sql"),
        placeholders: &[PROVIDER_TABLE],
    },
    ModuleSql {
        module: "payment_adyen",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_adyen.sql"),
        placeholders: &[
            PROVIDER_TABLE,
            Placeholder {
                name: "adyen_api_key",
                oldest: "",
                since: &[(16, ", adyen_api_key = NULL")],
            },
            Placeholder {
                name: "adyen_api_key_where",
                oldest: "",
                since: &[(16, " OR adyen_api_key IS NOT NULL")],
            },
        ],
    },
    ModuleSql {
        module: "payment_paypal",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_paypal.sql"),
        placeholders: &[
            PROVIDER_TABLE,
            Placeholder {
                name: "paypal_rest",
                oldest: "",
                since: &[(18, ", paypal_client_id = NULL, paypal_client_secret = NULL")],
            },
            Placeholder {
                name: "paypal_rest_where",
                oldest: "",
                since: &[(
                    18,
                    " OR paypal_client_id IS NOT NULL OR paypal_client_secret IS NOT NULL",
                )],
            },
        ],
    },
    ModuleSql {
        module: "payment_mollie",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_mollie.sql"),
        placeholders: &[PROVIDER_TABLE],
    },
    ModuleSql {
        module: "payment_authorize",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_authorize.sql"),
        placeholders: &[PROVIDER_TABLE],
    },
    ModuleSql {
        module: "payment_buckaroo",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_buckaroo.sql"),
        placeholders: &[PROVIDER_TABLE],
    },
    ModuleSql {
        module: "payment_ogone",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_ogone.sql"),
        placeholders: &[PROVIDER_TABLE],
    },
    ModuleSql {
        module: "payment_razorpay",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_razorpay.sql"),
        placeholders: &[PROVIDER_TABLE],
    },
    ModuleSql {
        module: "payment_sips",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_sips.sql"),
        placeholders: &[PROVIDER_TABLE],
    },
    ModuleSql {
        module: "payment_worldline",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_worldline.sql"),
        placeholders: &[PROVIDER_TABLE],
    },
    ModuleSql {
        module: "payment_xendit",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_xendit.sql"),
        placeholders: &[PROVIDER_TABLE],
    },
    ModuleSql {
        module: "payment_mercado_pago",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_mercado_pago.sql"),
        placeholders: &[PROVIDER_TABLE],
    },
    ModuleSql {
        module: "payment_flutterwave",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_flutterwave.sql"),
        placeholders: &[PROVIDER_TABLE],
    },
    ModuleSql {
        module: "payment_aps",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_aps.sql"),
        placeholders: &[PROVIDER_TABLE],
    },
    ModuleSql {
        module: "payment_asiapay",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_asiapay.sql"),
        placeholders: &[PROVIDER_TABLE],
    },
    ModuleSql {
        module: "payment_alipay",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_alipay.sql"),
        placeholders: &[PROVIDER_TABLE],
    },
    ModuleSql {
        module: "payment_payulatam",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_payulatam.sql"),
        placeholders: &[PROVIDER_TABLE],
    },
    ModuleSql {
        module: "payment_payumoney",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/payment_payumoney.sql"),
        placeholders: &[PROVIDER_TABLE],
    },
    ModuleSql {
        module: "delivery_bpost",
        oldest_major: 14,
        sql: DELIVERY_CARRIER,
        placeholders: &[],
    },
    ModuleSql {
        module: "delivery_dhl",
        oldest_major: 14,
        sql: DELIVERY_CARRIER,
        placeholders: &[],
    },
    ModuleSql {
        module: "delivery_easypost",
        oldest_major: 14,
        sql: DELIVERY_CARRIER,
        placeholders: &[],
    },
    ModuleSql {
        module: "delivery_fedex",
        oldest_major: 14,
        sql: DELIVERY_CARRIER,
        placeholders: &[],
    },
    ModuleSql {
        module: "delivery_sendcloud",
        oldest_major: 14,
        sql: DELIVERY_CARRIER,
        placeholders: &[],
    },
    ModuleSql {
        module: "delivery_shiprocket",
        oldest_major: 14,
        sql: DELIVERY_CARRIER,
        placeholders: &[],
    },
    ModuleSql {
        module: "delivery_starshipit",
        oldest_major: 14,
        sql: DELIVERY_CARRIER,
        placeholders: &[],
    },
    ModuleSql {
        module: "delivery_ups",
        oldest_major: 14,
        sql: DELIVERY_CARRIER,
        placeholders: &[],
    },
    ModuleSql {
        module: "delivery_usps",
        oldest_major: 14,
        sql: DELIVERY_CARRIER,
        placeholders: &[],
    },
    ModuleSql {
        module: "pos_adyen",
        oldest_major: 14,
        sql: POS_TERMINAL,
        placeholders: &[],
    },
    ModuleSql {
        module: "pos_mercado_pago",
        oldest_major: 14,
        sql: POS_TERMINAL,
        placeholders: &[],
    },
    ModuleSql {
        module: "pos_mercury",
        oldest_major: 14,
        sql: POS_TERMINAL,
        placeholders: &[],
    },
    ModuleSql {
        module: "pos_paytm",
        oldest_major: 14,
        sql: POS_TERMINAL,
        placeholders: &[],
    },
    ModuleSql {
        module: "pos_razorpay",
        oldest_major: 14,
        sql: POS_TERMINAL,
        placeholders: &[],
    },
    ModuleSql {
        module: "pos_six",
        oldest_major: 14,
        sql: POS_TERMINAL,
        placeholders: &[],
    },
    ModuleSql {
        module: "pos_stripe",
        oldest_major: 14,
        sql: POS_TERMINAL,
        placeholders: &[],
    },
    ModuleSql {
        module: "pos_viva_wallet",
        oldest_major: 14,
        sql: POS_TERMINAL,
        placeholders: &[],
    },
    ModuleSql {
        module: "account_online_synchronization",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/account_online_synchronization.sql"),
        placeholders: &[],
    },
    ModuleSql {
        module: "cloud_storage_azure",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/cloud_storage_azure.sql"),
        placeholders: &[],
    },
    ModuleSql {
        module: "cloud_storage_google",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/cloud_storage_google.sql"),
        placeholders: &[],
    },
    ModuleSql {
        module: "account_edi_proxy_client",
        oldest_major: 17,
        sql: include_str!("../../sql/neutralize/account_edi_proxy_client.sql"),
        placeholders: &[],
    },
    ModuleSql {
        module: "sale_amazon",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/sale_amazon.sql"),
        placeholders: &[
            Placeholder {
                name: "amazon_token",
                oldest: "",
                since: &[(16, ", refresh_token = 'neutralized'")],
            },
            Placeholder {
                name: "amazon_token_where",
                oldest: "",
                since: &[(16, " OR refresh_token IS DISTINCT FROM 'neutralized'")],
            },
        ],
    },
    ModuleSql {
        module: "iap",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/iap.sql"),
        placeholders: &[],
    },
    ModuleSql {
        module: "sms",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/sms.sql"),
        placeholders: &[],
    },
    ModuleSql {
        module: "google_calendar",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/google_calendar.sql"),
        placeholders: &[
            Placeholder {
                name: "gcal_table",
                oldest: "res_users",
                since: &[(16, "res_users_settings")],
            },
            Placeholder {
                name: "gcal_stopped",
                oldest: "",
                since: &[(16, ", google_synchronization_stopped = true")],
            },
            Placeholder {
                name: "gcal_stopped_where",
                oldest: "",
                since: &[(16, " OR google_synchronization_stopped IS NOT TRUE")],
            },
        ],
    },
    ModuleSql {
        module: "microsoft_calendar",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/microsoft_calendar.sql"),
        placeholders: &[],
    },
    ModuleSql {
        module: "google_gmail",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/google_gmail.sql"),
        placeholders: &[Placeholder {
            name: "gmail_fetchmail",
            oldest: "",
            since: &[(
                16,
                "UPDATE public.fetchmail_server SET google_gmail_refresh_token = NULL\n \
                 WHERE google_gmail_refresh_token IS NOT NULL;",
            )],
        }],
    },
    ModuleSql {
        module: "microsoft_outlook",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/microsoft_outlook.sql"),
        placeholders: &[Placeholder {
            name: "outlook_fetchmail",
            oldest: "",
            since: &[(
                16,
                "UPDATE public.fetchmail_server\n   \
                 SET microsoft_outlook_refresh_token = NULL, microsoft_outlook_access_token = NULL\n \
                 WHERE microsoft_outlook_refresh_token IS NOT NULL OR microsoft_outlook_access_token IS NOT NULL;",
            )],
        }],
    },
    ModuleSql {
        module: "website",
        oldest_major: 14,
        sql: include_str!("../../sql/neutralize/website.sql"),
        placeholders: &[],
    },
];

/// Modules whose upstream `data/neutralize.sql` (Odoo 14 to 18, community and
/// enterprise) blanks something: installed and not in [`MODULES`], they are refused.
const COVERED_UPSTREAM: &[&str] = &[
    // E-invoicing through Odoo's proxy (Greece's myDATA, Malaysia's MyInvois): their
    // neutralization points the copy away from the production registration.
    "l10n_gr_edi",
    "l10n_my_edi",
    "social_facebook",
    "social_instagram",
    "social_linkedin",
    "social_push_notifications",
    "social_twitter",
    "social_youtube",
];

/// One statement of the neutralization.
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    pub module: &'static str,
    pub sql: String,
    /// Its one bind parameter (`$1`), if any.
    pub param: Option<String>,
}

/// The neutralization of one database.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    pub statements: Vec<Statement>,
    /// Installed, neutralized upstream, unknown to odoo-db: the caller refuses.
    pub unknown_covered: Vec<String>,
    /// Installed, with nothing to neutralize as far as odoo-db and Odoo know.
    pub other_modules: Vec<String>,
}

/// The statements of `sql` (split at `;` ending a line, comments dropped).
fn statements_of(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(";\n")
        .map(|statement| statement.trim().trim_end_matches(';').trim().to_string())
        .filter(|statement| !statement.is_empty())
        .collect()
}

/// The neutralization for Odoo `major` with `installed` modules; refused when the
/// major is outside [`SUPPORTED`].
pub(crate) fn plan(major: u32, installed: &[String], web_base_url: Option<&str>) -> Result<Plan> {
    if !SUPPORTED.contains(&major) {
        return Err(Error::refused(format!(
            "the database is Odoo {major} (from base's latest_version), and odoo-db neutralizes Odoo {} to {} \
             only; neutralize it by hand after a copy, or (knowingly) pass --no-neutralize",
            SUPPORTED.start(),
            SUPPORTED.end()
        )));
    }
    let mut plan = Plan::default();
    for module in installed {
        let known = MODULES
            .iter()
            .find(|known| known.module == module && major >= known.oldest_major);
        match known {
            Some(known) => {
                let sql = render(known.sql, known.placeholders, major as i32);
                plan.statements
                    .extend(statements_of(&sql).into_iter().map(|sql| Statement {
                        module: known.module,
                        sql,
                        param: None,
                    }));
                if known.module == "base" {
                    if let Some(url) = web_base_url {
                        plan.statements.push(Statement {
                            module: "base",
                            sql: statements_of(include_str!(
                                "../../sql/neutralize/web_base_url.sql"
                            ))
                            .remove(0),
                            param: Some(url.to_string()),
                        });
                    }
                }
            }
            None if COVERED_UPSTREAM.contains(&module.as_str()) => {
                plan.unknown_covered.push(module.clone())
            }
            None => match MODULES.iter().find(|known| known.module == module) {
                // Known, but not for this major: say from which one.
                Some(known) => plan.unknown_covered.push(format!(
                    "{module} (odoo-db neutralizes it from Odoo {}, this is Odoo {major})",
                    known.oldest_major
                )),
                None => plan.other_modules.push(module.clone()),
            },
        }
    }
    Ok(plan)
}

/// Apply `plan` in one transaction, in the database `client` is in, with the user
/// triggers of every table disabled for it (as the tables' owner: `client` is logged
/// in as a member of it). Nothing is applied unless everything is.
pub(crate) async fn apply(client: &mut Client, plan: &Plan) -> Result<()> {
    let transaction = client
        .transaction()
        .await
        .context("beginning the neutralization")?;
    let tables: Vec<String> = transaction
        .query(include_str!("../../sql/odoo/triggered_tables.sql"), &[])
        .await
        .context("listing the tables with triggers")?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for table in &tables {
        transaction
            .batch_execute(&format!("ALTER TABLE {table} DISABLE TRIGGER USER"))
            .await
            .with_context(|| format!("disabling the triggers of {table}"))?;
    }
    for statement in &plan.statements {
        let result = match &statement.param {
            Some(param) => transaction.execute(statement.sql.as_str(), &[param]).await,
            None => transaction.execute(statement.sql.as_str(), &[]).await,
        };
        result.with_context(|| {
            format!(
                "neutralizing ({}): {}",
                statement.module,
                statement.sql.lines().next().unwrap_or_default()
            )
        })?;
    }
    fail::fail_point!("refresh-in-neutralization");
    for table in &tables {
        transaction
            .batch_execute(&format!("ALTER TABLE {table} ENABLE TRIGGER USER"))
            .await
            .with_context(|| format!("enabling the triggers of {table} again"))?;
    }
    transaction
        .commit()
        .await
        .context("committing the neutralization")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn every_template_is_complete_for_every_major() {
        for module in MODULES {
            for placeholder in module.placeholders {
                assert!(module.sql.contains(&format!("{{{}}}", placeholder.name)));
            }
            for major in SUPPORTED {
                let sql = render(module.sql, module.placeholders, major as i32);
                assert!(!sql.contains('{'), "{} for Odoo {major}", module.module);
            }
        }
    }

    #[test]
    fn versions_get_their_own_tables_and_columns() {
        let old = plan(15, &installed(&["base", "payment", "mail"]), None).unwrap();
        let new = plan(17, &installed(&["base", "payment", "mail"]), None).unwrap();
        let text = |p: &Plan| {
            p.statements
                .iter()
                .map(|s| s.sql.clone())
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(text(&old).contains("payment_acquirer"));
        assert!(!text(&old).contains("webhook_url"));
        assert!(!text(&old).contains("fetchmail_server"));
        assert!(text(&new).contains("payment_provider"));
        assert!(text(&new).contains("webhook_url"));
        assert!(text(&new).contains("fetchmail_server"));
    }

    fn text_of(p: &Plan, module: &str) -> String {
        p.statements
            .iter()
            .filter(|s| s.module == module)
            .map(|s| s.sql.clone())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn sync_and_sms_modules_blank_their_tokens_per_version() {
        let modules = installed(&[
            "sms",
            "google_calendar",
            "microsoft_calendar",
            "google_gmail",
            "microsoft_outlook",
        ]);
        for major in SUPPORTED {
            let p = plan(major, &modules, None).unwrap();
            assert!(p.unknown_covered.is_empty(), "Odoo {major}");
            assert!(text_of(&p, "sms").contains("'sms.endpoint'"));
            assert_eq!(
                text_of(&p, "sms")
                    .matches("iap-services-test.odoo.com")
                    .count(),
                3
            );
            let gcal = text_of(&p, "google_calendar");
            let settings = gcal.contains("public.res_users_settings");
            assert_eq!(settings, major >= 16, "Odoo {major}: {gcal}");
            assert_eq!(gcal.contains("google_synchronization_stopped"), major >= 16);
            assert!(text_of(&p, "microsoft_calendar").contains("microsoft_calendar_rtoken = NULL"));
            let incoming = |module| {
                p.statements
                    .iter()
                    .filter(|s| s.module == module && s.sql.contains("fetchmail_server"))
                    .count()
            };
            let expected = usize::from(major >= 16);
            assert_eq!(incoming("google_gmail"), expected, "Odoo {major}");
            assert_eq!(incoming("microsoft_outlook"), expected, "Odoo {major}");
            assert_eq!(p.statements.len(), 2 + 1 + 1 + 1 + expected * 2 + 1);
        }
    }

    #[test]
    fn payment_providers_blank_their_credentials_in_their_table() {
        let providers: Vec<&str> = MODULES
            .iter()
            .map(|m| m.module)
            .filter(|m| m.starts_with("payment_"))
            .collect();
        assert_eq!(providers.len(), 18);
        for major in SUPPORTED {
            let p = plan(major, &installed(&providers), None).unwrap();
            assert!(p.unknown_covered.is_empty());
            let table = if major >= 16 {
                "public.payment_provider"
            } else {
                "public.payment_acquirer"
            };
            for provider in &providers {
                let sql = text_of(&p, provider);
                assert!(
                    sql.starts_with(&format!("UPDATE {table}\n")),
                    "{provider} {major}"
                );
                let (set, filter) = sql.split_once(" WHERE ").unwrap();
                // every blanked column is in the filter, so a second run changes nothing
                let columns: Vec<&str> = set
                    .split(" = NULL")
                    .filter_map(|part| part.split_whitespace().last())
                    .map(|c| c.trim_start_matches(','))
                    .collect();
                assert!(!columns.is_empty(), "{provider}");
                for column in columns {
                    assert!(
                        filter.contains(&format!("{column} IS NOT NULL")),
                        "{provider} {major}: {column}"
                    );
                }
            }
            assert_eq!(
                text_of(&p, "payment_adyen").contains("adyen_api_key"),
                major >= 16
            );
            assert_eq!(
                text_of(&p, "payment_paypal").contains("paypal_client_secret"),
                major >= 18
            );
        }
    }

    #[test]
    fn carriers_and_terminals_share_one_statement_each() {
        let p = plan(
            14,
            &installed(&["delivery_fedex", "delivery_ups", "pos_adyen", "pos_six"]),
            None,
        )
        .unwrap();
        assert!(p.unknown_covered.is_empty());
        assert_eq!(p.statements.len(), 4);
        assert_eq!(p.statements[0].sql, p.statements[1].sql);
        assert!(p.statements[0]
            .sql
            .starts_with("UPDATE public.delivery_carrier SET prod_environment = false"));
        assert_eq!(p.statements[2].sql, p.statements[3].sql);
        assert!(p.statements[2]
            .sql
            .contains("use_payment_terminal IS NOT NULL AND active"));
        assert_eq!(p.statements[3].module, "pos_six");
    }

    #[test]
    fn cloud_storage_and_bank_sync_are_version_independent() {
        let modules = installed(&[
            "account_online_synchronization",
            "cloud_storage_azure",
            "cloud_storage_google",
        ]);
        let first = plan(14, &modules, None).unwrap();
        assert!(first.unknown_covered.is_empty());
        for major in SUPPORTED {
            let p = plan(major, &modules, None).unwrap();
            assert_eq!(
                text_of(&p, "cloud_storage_azure"),
                text_of(&first, "cloud_storage_azure")
            );
            assert!(
                text_of(&p, "cloud_storage_google").contains("LIKE 'cloud\\_storage\\_google\\_%'")
            );
            assert!(text_of(&p, "account_online_synchronization")
                .contains("IS DISTINCT FROM 'duplicate'"));
        }
    }

    #[test]
    fn the_edi_proxy_is_refused_before_17() {
        let modules = installed(&["account_edi_proxy_client"]);
        for major in SUPPORTED {
            let p = plan(major, &modules, None).unwrap();
            assert_eq!(p.unknown_covered.is_empty(), major >= 17, "Odoo {major}");
            assert_eq!(p.statements.len(), usize::from(major >= 17));
        }
        // The refusal says why a module odoo-db knows is refused.
        assert_eq!(
            plan(15, &modules, None).unwrap().unknown_covered,
            ["account_edi_proxy_client (odoo-db neutralizes it from Odoo 17, this is Odoo 15)"]
        );
    }

    #[test]
    fn amazon_gets_a_marker_in_its_required_columns() {
        let old = plan(15, &installed(&["sale_amazon"]), None).unwrap();
        let new = plan(16, &installed(&["sale_amazon"]), None).unwrap();
        assert!(!text_of(&old, "sale_amazon").contains("refresh_token"));
        assert!(text_of(&new, "sale_amazon").contains("refresh_token = 'neutralized'"));
        assert!(!text_of(&new, "sale_amazon").contains("NULL"));
    }

    #[test]
    fn unknown_modules_are_sorted_out() {
        let p = plan(
            16,
            &installed(&["base", "l10n_my_edi", "social_twitter", "x_reports"]),
            Some("https://i.example"),
        )
        .unwrap();
        assert_eq!(p.unknown_covered, ["l10n_my_edi", "social_twitter"]);
        assert_eq!(p.other_modules, ["x_reports"]);
        assert_eq!(
            p.statements.last().unwrap().param.as_deref(),
            Some("https://i.example")
        );
        assert!(plan(12, &installed(&["base"]), None).is_err());
    }
}
