//! Governance commands: lineage, principals, roles, grants, masks, row
//! filters, tokens, audit, compliance, classification and erasure.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use tarn::governance::AuditFilter;
use tarn::governance::access::{Grantee, MaskRule, PrincipalKind, Privilege, RowFilterRule};
use tarn::governance::lineage_graph::Direction;
use tarn::{EraseScope, GrantTarget, parse_mask, parse_table};

use crate::args::{
    AuditArgs, ClassifyArgs, Command, ComplianceCommand, EraseArgs, GrantArgs, KindArg,
    LineageArgs, LineageFormat, MaskArgs, PrincipalCommand, RoleCommand, RowFilterArgs,
    TokenCommand,
};
use crate::commands::open_lake;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Runs a governance command.
pub async fn run(config: Option<&Path>, command: Command, o: &mut String) -> Result<ExitCode> {
    let lake = open_lake(config).await?;
    match command {
        Command::Lineage(args) => lineage(&lake, args, o).await?,
        Command::Principal(cmd) => principal(&lake, cmd, o).await?,
        Command::Role(cmd) => role(&lake, cmd, o).await?,
        Command::Grant(args) => grant(&lake, args, true, o).await?,
        Command::Revoke(args) => grant(&lake, args, false, o).await?,
        Command::Mask(args) => mask(&lake, args, o).await?,
        Command::RowFilter(args) => row_filter(&lake, args, o).await?,
        Command::Token(cmd) => token(&lake, cmd, o).await?,
        Command::Audit(args) => audit(&lake, args, o).await?,
        Command::Compliance(ComplianceCommand::Check { json }) => {
            return compliance(&lake, json, o).await;
        }
        Command::Classify(args) => classify(&lake, args, o).await?,
        Command::Erase(args) => erase(&lake, args, o).await?,
        other => return Err(format!("not a governance command: {other:?}").into()),
    }
    Ok(ExitCode::SUCCESS)
}

async fn lineage(lake: &tarn::DataLake, args: LineageArgs, o: &mut String) -> Result<()> {
    let direction = match (args.upstream, args.downstream) {
        (true, _) => Direction::Upstream,
        (_, true) => Direction::Downstream,
        _ => Direction::Both,
    };
    let table = args.table.replacen('.', "/", 1);
    let graph = lake.lineage(&table, direction, args.depth).await?;
    let text = match args.format {
        LineageFormat::Text => graph.to_text(),
        LineageFormat::Json => serde_json::to_string_pretty(&graph)?,
        LineageFormat::Dot => graph.to_dot(),
        LineageFormat::Mermaid => graph.to_mermaid(),
    };
    o.push_str(text.trim_end());
    o.push('\n');
    Ok(())
}

fn attributes(items: &[String]) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("--attr `{a}`: give KEY=VALUE").into())
        })
        .collect()
}

async fn principal(lake: &tarn::DataLake, cmd: PrincipalCommand, o: &mut String) -> Result<()> {
    match cmd {
        PrincipalCommand::Add {
            name,
            kind,
            attributes: attrs,
        } => {
            let kind = match kind {
                KindArg::User => PrincipalKind::User,
                KindArg::Service => PrincipalKind::Service,
            };
            lake.add_principal(&name, kind, attributes(&attrs)?).await?;
            out!(o, "principal {name} ({}) saved", kind.as_str());
        }
        PrincipalCommand::List { json } => {
            let state = lake.metadata().access_state().await?;
            if json {
                let rows: Vec<_> = state
                    .principals
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "name": p.name, "kind": p.kind, "attributes": p.attributes,
                            "roles": state.roles_of(&p.name), "created_at": p.created_at,
                        })
                    })
                    .collect();
                out!(o, "{}", serde_json::to_string_pretty(&rows)?);
            } else {
                out!(o, "{:<20} {:<8} {:<30} ATTRIBUTES", "NAME", "KIND", "ROLES");
                for p in &state.principals {
                    let roles: Vec<String> = state.roles_of(&p.name).into_iter().collect();
                    let attrs: Vec<String> = p
                        .attributes
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    out!(
                        o,
                        "{:<20} {:<8} {:<30} {}",
                        p.name,
                        p.kind.as_str(),
                        roles.join(","),
                        attrs.join(" ")
                    );
                }
            }
        }
        PrincipalCommand::Show { name, json } => {
            let state = lake.metadata().access_state().await?;
            let policy = state.policy_for(&name)?;
            let grants: Vec<String> = state
                .grants
                .iter()
                .filter(|g| match &g.grantee {
                    Grantee::User(u) => *u == name,
                    Grantee::Role(r) => policy.roles.contains(r),
                })
                .map(|g| format!("{} {} (via {})", g.privilege, g.securable, g.grantee))
                .collect();
            let masks: Vec<String> = state
                .masks
                .iter()
                .filter(|m| {
                    m.role.as_ref().is_none_or(|r| policy.roles.contains(r))
                        && !m.except_roles.iter().any(|r| policy.roles.contains(r))
                })
                .map(|m| format!("{}/{}.{}: {}", m.zone, m.dataset, m.column, m.mask))
                .collect();
            let filters: Vec<String> = state
                .row_filters
                .iter()
                .filter(|f| {
                    f.role.as_ref().is_none_or(|r| policy.roles.contains(r))
                        && !f.except_roles.iter().any(|r| policy.roles.contains(r))
                })
                .map(|f| format!("{}/{}: {} [{}]", f.zone, f.dataset, f.predicate, f.id))
                .collect();
            if json {
                let v = serde_json::json!({
                    "name": name, "roles": policy.roles, "attributes": policy.attributes,
                    "admin": policy.is_admin, "grants": grants, "masks": masks,
                    "row_filters": filters,
                });
                out!(o, "{}", serde_json::to_string_pretty(&v)?);
            } else {
                out!(
                    o,
                    "{name}{}",
                    if policy.is_admin {
                        " (admin: every privilege)"
                    } else {
                        ""
                    }
                );
                let roles: Vec<&String> = policy.roles.iter().collect();
                out!(o, "  roles:       {}", join_or_none(&roles));
                let attrs: Vec<String> = policy
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                out!(o, "  attributes:  {}", join_or_none(&attrs));
                for (title, items) in [
                    ("grants", grants),
                    ("masks", masks),
                    ("row filters", filters),
                ] {
                    out!(o, "  {title}:");
                    if items.is_empty() {
                        out!(o, "    (none)");
                    }
                    for i in items {
                        out!(o, "    {i}");
                    }
                }
            }
        }
        PrincipalCommand::Remove { name } => {
            if lake.remove_principal(&name).await? {
                out!(o, "principal {name} removed");
            } else {
                return Err(format!("no principal `{name}`").into());
            }
        }
    }
    Ok(())
}

fn join_or_none<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

async fn role(lake: &tarn::DataLake, cmd: RoleCommand, o: &mut String) -> Result<()> {
    match cmd {
        RoleCommand::Add { name, description } => {
            lake.add_role(&name, description.as_deref()).await?;
            out!(o, "role {name} saved");
        }
        RoleCommand::List { json } => {
            let state = lake.metadata().access_state().await?;
            if json {
                out!(o, "{}", serde_json::to_string_pretty(&state.roles)?);
            } else {
                out!(o, "{:<20} {:<40} DESCRIPTION", "ROLE", "MEMBERS");
                for r in &state.roles {
                    out!(
                        o,
                        "{:<20} {:<40} {}",
                        r.name,
                        r.members.join(","),
                        r.description.as_deref().unwrap_or("")
                    );
                }
            }
        }
        RoleCommand::Remove { name } => {
            if !lake.remove_role(&name).await? {
                return Err(format!("no role `{name}`").into());
            }
            out!(o, "role {name} removed");
        }
        RoleCommand::Assign { role, to } => {
            lake.set_role_member(&role, &to, true).await?;
            out!(o, "{to} is a member of {role}");
        }
        RoleCommand::Unassign { role, from } => {
            if !lake.set_role_member(&role, &from, false).await? {
                return Err(format!("{from} is not a member of {role}").into());
            }
            out!(o, "{from} is no longer a member of {role}");
        }
    }
    Ok(())
}

async fn grant(lake: &tarn::DataLake, args: GrantArgs, give: bool, o: &mut String) -> Result<()> {
    let privilege: Privilege = args.privilege.parse()?;
    let target = GrantTarget::parse(&args.target, args.columns)?;
    let grantee = match (args.to, args.to_role) {
        (Some(p), _) => Grantee::User(p),
        (None, Some(r)) => Grantee::Role(r),
        (None, None) => return Err("give --to PRINCIPAL or --to-role ROLE".into()),
    };
    if give {
        let granted = lake.grant(privilege, &target, &grantee).await?;
        if granted.is_empty() {
            out!(o, "{grantee} already holds that");
        }
        for g in granted {
            out!(o, "granted {g} to {grantee}");
        }
    } else {
        let revoked = lake.revoke(privilege, &target, &grantee).await?;
        if revoked.is_empty() {
            return Err(format!("{grantee} does not hold {privilege} on {}", args.target).into());
        }
        for g in revoked {
            out!(o, "revoked {g} from {grantee}");
        }
    }
    Ok(())
}

async fn mask(lake: &tarn::DataLake, args: MaskArgs, o: &mut String) -> Result<()> {
    if args.list {
        let masks = lake.metadata().access_state().await?.masks;
        if args.json {
            out!(o, "{}", serde_json::to_string_pretty(&masks)?);
        } else {
            out!(
                o,
                "{:<40} {:<12} {:<16} EXCEPT",
                "COLUMN",
                "MASK",
                "FOR ROLE"
            );
            for m in masks {
                out!(
                    o,
                    "{:<40} {:<12} {:<16} {}",
                    format!("{}/{}.{}", m.zone, m.dataset, m.column),
                    m.mask.to_string(),
                    m.role.as_deref().unwrap_or("everyone"),
                    m.except_roles.join(",")
                );
            }
        }
        return Ok(());
    }
    let (zone, dataset) = parse_table(args.table.as_deref().unwrap_or_default())?;
    let column = args.column.unwrap_or_default();
    if args.remove {
        if !lake
            .remove_mask(zone, &dataset, &column, args.role.as_deref())
            .await?
        {
            return Err(format!("no mask on {zone}/{dataset}.{column}").into());
        }
        out!(o, "mask on {zone}/{dataset}.{column} removed");
        return Ok(());
    }
    let mask = parse_mask(args.mask.as_deref().unwrap_or_default())?;
    lake.set_mask(MaskRule {
        zone,
        dataset: dataset.clone(),
        column: column.clone(),
        mask,
        role: args.role.clone(),
        except_roles: args.except_roles.clone(),
    })
    .await?;
    out!(
        o,
        "{zone}/{dataset}.{column} is masked ({mask}) for {}{}",
        args.role
            .map_or("everyone".into(), |r| format!("members of {r}")),
        if args.except_roles.is_empty() {
            String::new()
        } else {
            format!(" except members of {}", args.except_roles.join(", "))
        }
    );
    Ok(())
}

async fn row_filter(lake: &tarn::DataLake, args: RowFilterArgs, o: &mut String) -> Result<()> {
    if args.list {
        let filters = lake.metadata().access_state().await?.row_filters;
        if args.json {
            out!(o, "{}", serde_json::to_string_pretty(&filters)?);
        } else {
            out!(
                o,
                "{:<12} {:<28} {:<16} PREDICATE",
                "ID",
                "TABLE",
                "FOR ROLE"
            );
            for f in filters {
                out!(
                    o,
                    "{:<12} {:<28} {:<16} {}{}",
                    f.id,
                    format!("{}/{}", f.zone, f.dataset),
                    f.role.as_deref().unwrap_or("everyone"),
                    f.predicate,
                    if f.except_roles.is_empty() {
                        String::new()
                    } else {
                        format!("  (except {})", f.except_roles.join(", "))
                    }
                );
            }
        }
        return Ok(());
    }
    if let Some(id) = args.remove {
        if !lake.remove_row_filter(&id).await? {
            return Err(format!("no row filter `{id}` (see tarn row-filter --list)").into());
        }
        out!(o, "row filter {id} removed");
        return Ok(());
    }
    let (zone, dataset) = parse_table(args.table.as_deref().unwrap_or_default())?;
    let id = lake
        .add_row_filter(RowFilterRule {
            id: String::new(),
            zone,
            dataset: dataset.clone(),
            predicate: args.predicate.unwrap_or_default(),
            role: args.role,
            except_roles: args.except_roles,
        })
        .await?;
    out!(o, "row filter {id} added on {zone}/{dataset}");
    Ok(())
}

/// `90d`, `12h`, `30m`.
fn duration(text: &str) -> Result<chrono::Duration> {
    let (n, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = n
        .parse()
        .map_err(|_| format!("`{text}`: give a duration such as 90d, 12h or 30m"))?;
    match unit {
        "d" => Ok(chrono::Duration::days(n)),
        "h" => Ok(chrono::Duration::hours(n)),
        "m" => Ok(chrono::Duration::minutes(n)),
        _ => Err(format!("`{text}`: give a duration such as 90d, 12h or 30m").into()),
    }
}

async fn token(lake: &tarn::DataLake, cmd: TokenCommand, o: &mut String) -> Result<()> {
    match cmd {
        TokenCommand::Create {
            principal,
            expires_in,
            json,
        } => {
            let t = lake
                .create_token(&principal, duration(&expires_in)?)
                .await?;
            if json {
                out!(o, "{}", serde_json::to_string_pretty(&t)?);
            } else {
                out!(
                    o,
                    "token {} for {} (expires {})",
                    t.id,
                    t.principal,
                    t.expires_at
                );
                out!(o, "{}", t.token);
                out!(
                    o,
                    "(shown once: only its hash is stored; use it as TARN_TOKEN or --token)"
                );
            }
        }
        TokenCommand::List { json } => {
            if !lake.principal().is_admin {
                return Err("permission denied: listing tokens needs the admin role".into());
            }
            let tokens = lake.metadata().tokens().await?;
            if json {
                let rows: Vec<_> = tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "id": t.id, "principal": t.principal, "created_at": t.created_at,
                            "expires_at": t.expires_at, "revoked_at": t.revoked_at,
                            "last_used_at": t.last_used_at,
                        })
                    })
                    .collect();
                out!(o, "{}", serde_json::to_string_pretty(&rows)?);
            } else {
                out!(
                    o,
                    "{:<18} {:<16} {:<26} STATE",
                    "ID",
                    "PRINCIPAL",
                    "EXPIRES"
                );
                let now = chrono::Utc::now();
                for t in tokens {
                    let state = if t.revoked_at.is_some() {
                        "revoked"
                    } else if t.expires_at <= now {
                        "expired"
                    } else {
                        "active"
                    };
                    out!(
                        o,
                        "{:<18} {:<16} {:<26} {state}",
                        t.id,
                        t.principal,
                        t.expires_at.to_rfc3339()
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            if !lake.revoke_token(&id).await? {
                return Err(format!("no active token `{id}`").into());
            }
            out!(o, "token {id} revoked");
        }
    }
    Ok(())
}

fn since(text: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .map_err(|_| format!("--since `{text}`: give RFC 3339 or YYYY-MM-DD").into())
}

async fn audit(lake: &tarn::DataLake, args: AuditArgs, o: &mut String) -> Result<()> {
    let filter = AuditFilter {
        principal: args.principal,
        action: args.action,
        since: args.since.as_deref().map(since).transpose()?,
        limit: Some(args.limit),
    };
    let events = lake.audit_log(&filter).await?;
    if args.json {
        for e in events {
            out!(o, "{}", serde_json::to_string(&e)?);
        }
        return Ok(());
    }
    out!(
        o,
        "{:<27} {:<12} {:<14} {:<8} {:>7}  TARGET / DETAIL",
        "AT",
        "PRINCIPAL",
        "ACTION",
        "ALLOWED",
        "ROWS"
    );
    for e in events {
        let detail = e
            .detail
            .get("statement")
            .or_else(|| e.detail.get("reason"))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .replace('\n', " ");
        out!(
            o,
            "{:<27} {:<12} {:<14} {:<8} {:>7}  {} {}",
            e.at.format("%Y-%m-%d %H:%M:%S%.3fZ"),
            e.principal,
            e.action,
            if e.allowed { "yes" } else { "DENIED" },
            e.rows.map_or("-".into(), |r| r.to_string()),
            e.target.as_deref().unwrap_or(""),
            detail
        );
    }
    Ok(())
}

async fn compliance(lake: &tarn::DataLake, json: bool, o: &mut String) -> Result<ExitCode> {
    let report = lake.compliance_report().await?;
    let failed = report.iter().filter(|r| !r.passed).count();
    if json {
        out!(o, "{}", serde_json::to_string_pretty(&report)?);
    } else if report.is_empty() {
        out!(o, "no compliance rules (add them to compliance.yaml)");
    } else {
        out!(
            o,
            "{:<6} {:<24} {:<18} {:<22} EVIDENCE",
            "RESULT",
            "RULE",
            "KIND",
            "DATASET"
        );
        for r in &report {
            out!(
                o,
                "{:<6} {:<24} {:<18} {:<22} {}{}",
                if r.passed { "pass" } else { "FAIL" },
                r.rule,
                r.kind,
                match (&r.dataset, r.zone) {
                    (Some(d), Some(z)) => format!("{z}/{d}"),
                    (Some(d), None) => d.clone(),
                    _ => "-".into(),
                },
                r.evidence,
                if !r.passed && r.blocking {
                    " [blocking]"
                } else {
                    ""
                }
            );
        }
        out!(o, "{} checks, {failed} failed", report.len());
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn classify(lake: &tarn::DataLake, args: ClassifyArgs, o: &mut String) -> Result<()> {
    for item in &args.set {
        let (column, tag) = item
            .split_once('=')
            .filter(|(c, t)| !c.is_empty() && !t.is_empty())
            .ok_or_else(|| format!("--set `{item}`: give COLUMN=TAG"))?;
        lake.set_classification(&args.dataset, column, Some(tag))
            .await?;
    }
    for column in &args.clear {
        lake.set_classification(&args.dataset, column, None).await?;
    }
    if args.detect {
        lake.detect_pii(&args.dataset).await?;
    }
    let columns = lake.classifications(&args.dataset).await?;
    if args.json {
        out!(o, "{}", serde_json::to_string_pretty(&columns)?);
        return Ok(());
    }
    if columns.is_empty() {
        out!(o, "{}: no classified columns", args.dataset);
        return Ok(());
    }
    out!(
        o,
        "{:<24} {:<18} {:<10} {:>10}  EVIDENCE",
        "COLUMN",
        "TAG",
        "SOURCE",
        "CONFIDENCE"
    );
    for c in columns {
        out!(
            o,
            "{:<24} {:<18} {:<10} {:>10.2}  {}",
            c.column,
            c.tag.as_deref().unwrap_or("(cleared)"),
            c.source,
            c.confidence,
            c.evidence
        );
    }
    Ok(())
}

async fn erase(lake: &tarn::DataLake, args: EraseArgs, o: &mut String) -> Result<()> {
    let scope = match args.all_datasets_with_column {
        Some(c) => EraseScope::WithColumn(c),
        None => EraseScope::Datasets(args.dataset),
    };
    let (report, record) = lake
        .erase(
            &args.predicate,
            &scope,
            args.override_retention,
            args.dry_run,
        )
        .await?;
    if args.json {
        let v = serde_json::json!({ "report": report, "evidence": record });
        out!(o, "{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for t in &report.tables {
        out!(
            o,
            "{:<40} {verb} {:>8} row(s)  v{} -> v{}  {} file(s) vacuumed",
            t.table,
            t.rows_deleted,
            t.version_before,
            t.version_after,
            t.files_vacuumed
        );
    }
    for s in &report.skipped {
        out!(o, "{:<40} skipped: {}", s.table, s.reason);
    }
    if let Some(r) = record {
        out!(o, "evidence recorded as erasure {}", r.id);
        out!(
            o,
            "versions before these are no longer readable (time travel is refused)"
        );
    }
    if report.files_pending > 0 {
        out!(
            o,
            "{} file(s) still hold erased rows until the zones' vacuum retention passes \
             (`tarn policy apply`), or erase again with --override-retention",
            report.files_pending
        );
    }
    Ok(())
}
