//! PostgreSQL knowledge that odoo-db's commands share: what a database is made of
//! ([`dbprops`]), how it is backed up and restored with the client tools ([`backup`]),
//! the lock that keeps two destructive jobs apart ([`oplock`]), the throwaway roles
//! that run customer code ([`steprole`]), acting as a database owner
//! ([`membership`]), customer names as the clusters show them ([`customer_names`]), a
//! customer's role and database as the lifecycle commands see them ([`lifecycle`]) and
//! quoting ([`quote`]). Nothing here knows a command; the
//! commands compose these pieces.

pub mod backup;
pub mod customer_names;
pub mod dbprops;
pub mod lifecycle;
pub mod membership;
pub mod oplock;
pub mod quote;
pub mod steprole;
