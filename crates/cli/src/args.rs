//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// tarn: an enterprise data lake in one binary.
///
/// Files go in, are validated against their schema, and land as Delta tables in
/// the raw zone; bad records go to quarantine with a reason. `tarn process`
/// promotes new data through the cleansed, curated and consumption zones as
/// tarn.yaml declares. SQL and structured queries run over every zone. Start
/// with `tarn demo`, or `tarn init`, then `tarn ingest file`, `tarn process`
/// and `tarn query`.
#[derive(Debug, Parser)]
#[command(
    name = "tarn",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = EXAMPLES
)]
pub struct Cli {
    /// The lake's config file [default: $TARN_CONFIG, then ./tarn.yaml]
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// More log output (-v, -vv); TARN_LOG overrides with a tracing filter.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Act as this principal: queries see what its grants, masks and row
    /// filters allow, and the audit log names it [default: admin]
    #[arg(
        long = "as",
        global = true,
        value_name = "PRINCIPAL",
        env = "TARN_PRINCIPAL"
    )]
    pub acting_as: Option<String>,

    /// Act as the principal of this API token (see `tarn token create`).
    #[arg(
        long = "token",
        global = true,
        env = "TARN_TOKEN",
        hide_env_values = true
    )]
    pub api_token: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a lake: a commented tarn.yaml and compliance.yaml, the zone
    /// directories and the SQLite metadata store.
    Init {
        /// Directory of the new lake.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run tarn's main job on the bundled user_events example: create a lake
    /// in DIR, ingest two days of clickstream events (duplicates, late
    /// arrivals, PII, bad values) and a reference table, and process them
    /// through the cleansed, curated and consumption zones (no servers needed).
    Demo {
        /// Directory for the demo lake.
        #[arg(default_value = "tarn-demo")]
        dir: PathBuf,
    },
    /// Ingest data into a dataset's raw table.
    #[command(subcommand)]
    Ingest(IngestCommand),
    /// Browse the catalog: datasets, schemas, runs and row counts.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Query the lake with SQL or a structured query.
    ///
    /// Every zone is a schema (raw, cleansed, curated, consumption) and every
    /// dataset a table in it; `system` holds runs, statistics and the cache.
    /// Unqualified names resolve in raw. Time travel: `raw."events@v3"` reads
    /// version 3, `raw."events@2024-02-10T12:00:00Z"` the version current then.
    #[command(after_help = QUERY_EXAMPLES)]
    Query(QueryArgs),
    /// Compute table and column statistics (row count, nulls, min/max,
    /// distinct estimate) and store them in the catalog.
    Analyze(AnalyzeArgs),
    /// Promote what is new in a dataset's raw table through the cleansed,
    /// curated and consumption zones, as its cleanse, curate and consume
    /// sections in tarn.yaml declare.
    ///
    /// Each stage reads only what its upstream committed since its last run
    /// and records the upstream version in the same commit as its output, so
    /// a rerun after a crash neither loses nor duplicates rows. Values that
    /// cannot be standardized (cleanse) and rows failing a `quarantine`
    /// expectation (curate) go to <zone>/_quarantine/<dataset> with the
    /// reason; a failed `fail` expectation commits nothing.
    #[command(after_help = PROCESS_EXAMPLES)]
    Process(ProcessArgs),
    /// Show a dataset's quality results: each expectation of each run.
    Quality(QualityArgs),
    /// Compact a table's small files, optionally Z-ordered by columns.
    Optimize(OptimizeArgs),
    /// Enforce the zone policies: retention deletes and vacuum.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Show dataset- and column-level lineage: what a table is computed from
    /// (upstream) and what is computed from it (downstream).
    #[command(after_help = LINEAGE_EXAMPLES)]
    Lineage(LineageArgs),
    /// Users and service accounts, with attributes row filters can use.
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Roles: named groups of principals that grants, masks and filters target.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Grant a privilege: USAGE on a zone; SELECT, INSERT or ADMIN on a table
    /// (ZONE/DATASET, or ZONE/* for every table of a zone); SELECT on columns.
    ///
    /// Access is denied by default. Reading a table needs USAGE on its zone
    /// and SELECT on it (or on the columns read); a table grant adds the
    /// USAGE it needs. Members of the `admin` role may do everything.
    #[command(after_help = GRANT_EXAMPLES)]
    Grant(GrantArgs),
    /// Revoke a privilege granted with `tarn grant`.
    Revoke(GrantArgs),
    /// Mask a column in query results: redact, hash, null or partial[:N]
    /// (the last N characters shown), for everyone or one role, except
    /// members of --except-role.
    #[command(after_help = MASK_EXAMPLES)]
    Mask(MaskArgs),
    /// Restrict the rows a principal sees to those where a SQL predicate
    /// holds; `principal_attr('key')` is the reader's attribute, and
    /// `current_principal()` its name.
    #[command(after_help = ROW_FILTER_EXAMPLES)]
    RowFilter(RowFilterArgs),
    /// API tokens: create (shown once, stored hashed, with an expiry), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show the audit log: queries (allowed and denied), ingests, promotions,
    /// grant changes, erasures and token use. Also `SELECT * FROM system.audit`.
    Audit(AuditArgs),
    /// Check the rules of compliance.yaml on every dataset.
    #[command(subcommand)]
    Compliance(ComplianceCommand),
    /// Show a dataset's column classifications (detected on ingest, declared
    /// in tarn.yaml or set by hand), or review them.
    #[command(after_help = CLASSIFY_EXAMPLES)]
    Classify(ClassifyArgs),
    /// Erase a data subject's rows from every zone table and quarantine of
    /// datasets (right to be forgotten), vacuum the files that held them and
    /// record the evidence.
    ///
    /// Versions older than the erasure can no longer be read (time travel is
    /// refused). The files that held the rows are vacuumed once the zone's
    /// vacuum_hours have passed, or at once with --override-retention.
    #[command(after_help = ERASE_EXAMPLES)]
    Erase(EraseArgs),
}

const LINEAGE_EXAMPLES: &str = "Examples:
  tarn lineage consumption/daily_purchases
  tarn lineage raw/user_events --downstream --depth 2
  tarn lineage curated/user_events --format dot | dot -Tpng > lineage.png
  tarn lineage curated/user_events --format mermaid";

const GRANT_EXAMPLES: &str = "Examples:
  tarn grant select raw/customers --to alice
  tarn grant select curated/orders --columns id,amount,region --to bob
  tarn grant select consumption/* --to-role analyst
  tarn grant usage curated --to alice
  tarn revoke select raw/customers --to alice";

const MASK_EXAMPLES: &str = "Examples:
  tarn mask raw/customers email --with redact --except-role pii_reader
  tarn mask raw/customers card --with partial:4
  tarn mask raw/customers ssn --with null --role contractor
  tarn mask raw/customers email --remove
  tarn mask --list";

const ROW_FILTER_EXAMPLES: &str = "Examples:
  tarn principal add alice --attr region=eu
  tarn row-filter raw/customers \"region = principal_attr('region')\"
  tarn row-filter curated/orders \"owner = current_principal()\" --except-role auditor
  tarn row-filter --list
  tarn row-filter --remove rf-1a2b3c";

const CLASSIFY_EXAMPLES: &str = "Examples:
  tarn classify customers
  tarn classify customers --set phone=pii:phone --clear nickname
  tarn classify customers --detect";

const ERASE_EXAMPLES: &str = "Examples:
  tarn erase --where \"user_id = 'u123'\" --dataset user_events --dry-run
  tarn erase --where \"user_id = 'u123'\" --all-datasets-with-column user_id --override-retention";

#[derive(Debug, Args)]
pub struct LineageArgs {
    /// The table, as ZONE/DATASET.
    pub table: String,
    /// Only what it is computed from.
    #[arg(long, conflicts_with = "downstream")]
    pub upstream: bool,
    /// Only what is computed from it.
    #[arg(long)]
    pub downstream: bool,
    /// At most this many hops.
    #[arg(long)]
    pub depth: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: LineageFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LineageFormat {
    /// An indented tree with a column section.
    Text,
    /// Nodes, edges and column edges as JSON.
    Json,
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

#[derive(Debug, Subcommand)]
pub enum PrincipalCommand {
    /// Add a principal (or update its kind and attributes).
    Add {
        /// Its name.
        name: String,
        /// A person or a service account.
        #[arg(long, value_enum, default_value = "user")]
        kind: KindArg,
        /// An attribute, KEY=VALUE; repeatable.
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attributes: Vec<String>,
    },
    /// List principals with their roles and attributes.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what a principal may do: roles, grants, masks and row filters.
    Show {
        /// Its name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a principal with its grants, role memberships and tokens.
    Remove {
        /// Its name.
        name: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    User,
    Service,
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Add a role.
    Add {
        /// Its name.
        name: String,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// List roles with their members.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a role with its memberships and grants.
    Remove {
        /// Its name.
        name: String,
    },
    /// Make a principal a member of a role.
    Assign {
        /// The role.
        role: String,
        /// The principal.
        #[arg(long)]
        to: String,
    },
    /// Take a principal out of a role.
    Unassign {
        /// The role.
        role: String,
        /// The principal.
        #[arg(long)]
        from: String,
    },
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    /// usage, select, insert or admin.
    pub privilege: String,
    /// A zone (for usage) or a table as ZONE/DATASET (ZONE/* for all of a zone).
    pub target: String,
    /// The principal.
    #[arg(
        long,
        alias = "from",
        required_unless_present = "to_role",
        conflicts_with = "to_role"
    )]
    pub to: Option<String>,
    /// The role.
    #[arg(long, alias = "from-role")]
    pub to_role: Option<String>,
    /// Only these columns (SELECT on one table).
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    pub columns: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MaskArgs {
    /// The table, as ZONE/DATASET.
    #[arg(required_unless_present = "list")]
    pub table: Option<String>,
    /// The column.
    #[arg(required_unless_present = "list")]
    pub column: Option<String>,
    /// redact, hash, null, partial or partial:N.
    #[arg(long = "with", value_name = "MASK", required_unless_present_any = ["remove", "list"])]
    pub mask: Option<String>,
    /// Only members of this role see the mask [default: everyone].
    #[arg(long)]
    pub role: Option<String>,
    /// Members of this role see the value; repeatable.
    #[arg(long = "except-role", value_name = "ROLE")]
    pub except_roles: Vec<String>,
    /// Remove the mask (of --role, if given).
    #[arg(long, conflicts_with = "mask")]
    pub remove: bool,
    /// List every mask.
    #[arg(long)]
    pub list: bool,
    /// With --list: print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RowFilterArgs {
    /// The table, as ZONE/DATASET.
    #[arg(required_unless_present_any = ["list", "remove"])]
    pub table: Option<String>,
    /// A SQL predicate over the table's columns.
    #[arg(required_unless_present_any = ["list", "remove"])]
    pub predicate: Option<String>,
    /// Only members of this role are filtered [default: everyone].
    #[arg(long)]
    pub role: Option<String>,
    /// Members of this role see every row; repeatable.
    #[arg(long = "except-role", value_name = "ROLE")]
    pub except_roles: Vec<String>,
    /// Remove the row filter with this id.
    #[arg(long, value_name = "ID")]
    pub remove: Option<String>,
    /// List every row filter.
    #[arg(long)]
    pub list: bool,
    /// With --list: print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for a principal; the secret is printed once.
    Create {
        /// The principal it authenticates.
        principal: String,
        /// How long it is valid: e.g. 90d, 12h, 30m.
        #[arg(long, default_value = "90d")]
        expires_in: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never their secrets).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id.
    Revoke {
        /// The token id (tk_…).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this principal's events.
    #[arg(long)]
    pub principal: Option<String>,
    /// Only this action (query, ingest, process, grant, revoke, erase, token_use, ...).
    #[arg(long)]
    pub action: Option<String>,
    /// Only events at or after this time (RFC 3339, or YYYY-MM-DD).
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many events, newest first.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Print JSON: one object per event.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ComplianceCommand {
    /// Report pass or fail for each rule and dataset, with the evidence.
    /// Exits non-zero when a rule fails.
    Check {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// The dataset.
    pub dataset: String,
    /// Set a column's tag by hand, COLUMN=TAG (e.g. phone=pii:phone); repeatable.
    #[arg(long, value_name = "COLUMN=TAG")]
    pub set: Vec<String>,
    /// Clear a column's tag by hand (it stays cleared); repeatable.
    #[arg(long, value_name = "COLUMN")]
    pub clear: Vec<String>,
    /// Sample the raw table and detect PII again.
    #[arg(long)]
    pub detect: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EraseArgs {
    /// A SQL predicate selecting the subject's rows, e.g. "user_id = 'u123'".
    #[arg(long = "where", value_name = "PREDICATE")]
    pub predicate: String,
    /// A dataset to erase from (every zone and quarantine); repeatable.
    #[arg(long, required_unless_present = "all_datasets_with_column")]
    pub dataset: Vec<String>,
    /// Erase from every dataset that has this column.
    #[arg(long, value_name = "COLUMN", conflicts_with = "dataset")]
    pub all_datasets_with_column: Option<String>,
    /// Vacuum the files that held the rows now, though the zones' vacuum
    /// retention has not passed (older versions then cannot be restored).
    #[arg(long)]
    pub override_retention: bool,
    /// Only count the rows that would be erased.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

const PROCESS_EXAMPLES: &str = "Examples:
  tarn process user_events
  tarn process raw/user_events --until cleansed
  tarn process user_events --full-refresh --json";

#[derive(Debug, Args)]
pub struct ProcessArgs {
    /// The dataset, as NAME or raw/NAME.
    pub dataset: String,
    /// The last zone to produce.
    #[arg(long, value_enum, default_value = "consumption")]
    pub until: UntilArg,
    /// Rebuild every stage from all of its input, not only what is new.
    #[arg(long)]
    pub full_refresh: bool,
    /// Print the ProcessingResult as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum UntilArg {
    Cleansed,
    Curated,
    Consumption,
}

#[derive(Debug, Args)]
pub struct QualityArgs {
    /// The dataset.
    pub dataset: String,
    /// How many of the newest runs to show.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Print JSON: one object per expectation per run.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OptimizeArgs {
    /// The table, as ZONE/DATASET (e.g. curated/user_events).
    pub table: String,
    /// Z-order the files by these columns.
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    pub zorder: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Delete rows past their retention and vacuum unreferenced files, as
    /// the `policies:` of tarn.yaml (and each dataset's overrides) say.
    Apply {
        /// Report what would be deleted without deleting anything.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

const QUERY_EXAMPLES: &str = "Examples:
  tarn query \"SELECT event_type, count(*) FROM raw.user_events GROUP BY 1\"
  tarn query --select user_id,event_type,timestamp --from raw/user_events \\
      --where event_type=purchase --where 'amount>10' --partition-date 2024-02-10
  tarn query --from raw/user_events --where 'country in DE,FR' --order-by 'timestamp desc' --limit 10
  tarn query \"SELECT * FROM raw.user_events\" --format parquet --output events.parquet
  tarn query --explain \"SELECT count(*) FROM raw.user_events WHERE _partition_date = '2024-02-10'\"
  tarn query \"SELECT * FROM system.runs\" --format json

--where takes COLUMN=VALUE (also !=, >, >=, <, <=), 'COLUMN in A,B', 'COLUMN not in A,B',
'COLUMN between A and B', 'COLUMN is null', 'COLUMN is not null', 'COLUMN like PATTERN'.
Conditions given more than once must all hold.";

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// An SQL statement (or use the structured flags with --from).
    pub sql: Option<String>,
    /// Structured query: the table, as ZONE/DATASET (e.g. raw/user_events).
    #[arg(long, value_name = "ZONE/DATASET")]
    pub from: Option<String>,
    /// Structured query: columns to return [default: all].
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS", requires = "from")]
    pub select: Vec<String>,
    /// Structured query: a condition rows must meet; repeatable.
    #[arg(long = "where", value_name = "CONDITION", requires = "from")]
    pub filters: Vec<String>,
    /// Structured query: one day (YYYY-MM-DD) or a range (FROM..TO, inclusive)
    /// of the table's partition date.
    #[arg(long, value_name = "DATE[..DATE]", requires = "from")]
    pub partition_date: Option<String>,
    /// Structured query: ordering, as COLUMN or 'COLUMN desc'; comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS", requires = "from")]
    pub order_by: Vec<String>,
    /// Structured query: at most this many rows.
    #[arg(long, requires = "from")]
    pub limit: Option<usize>,
    /// Output format [default: table on a terminal, else csv; with --output,
    /// from the file's extension]
    #[arg(long, value_enum)]
    pub format: Option<OutputArg>,
    /// Write the result to FILE instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Show the optimized plan, what each table scan reads before and after
    /// pruning, and the estimated cost, instead of running the query.
    #[arg(long)]
    pub explain: bool,
    /// With --explain: print it as JSON.
    #[arg(long, requires = "explain")]
    pub json: bool,
    /// Print row count, time and cache counters to stderr.
    #[arg(long)]
    pub stats: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputArg {
    /// An aligned text table.
    Table,
    /// CSV with a header line.
    Csv,
    /// JSON lines: one object per row.
    Json,
    /// A Parquet file.
    Parquet,
    /// Arrow IPC (stream format).
    Arrow,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// The table, as ZONE/DATASET (e.g. raw/user_events).
    pub table: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

const INGEST_EXAMPLES: &str = "Examples:
  tarn ingest file --dataset user_events --path 'incoming/*.csv' \\
      --schema user_events.avsc --partition-key timestamp
  tarn ingest file -d clicks -p s3://landing/clicks/ --format ndjson --json
  tarn ingest file -d legacy -p export.txt --format csv --delimiter ';' --no-header --null-marker NULL";

const EXAMPLES: &str = "Quick start:
  tarn demo                      the user_events example through every zone, in ./tarn-demo
  tarn init mylake               a new lake (tarn.yaml, zones, catalog)
  tarn -c mylake/tarn.yaml ingest file -d events -p 'incoming/*.csv' -s events.avsc
  tarn -c mylake/tarn.yaml process events
  tarn -c mylake/tarn.yaml catalog show events
  tarn -c mylake/tarn.yaml query \"SELECT count(*) FROM curated.events\"";

#[derive(Debug, Subcommand)]
pub enum IngestCommand {
    /// Ingest files (CSV, NDJSON, JSON, Parquet, Avro) from paths, directories or globs.
    ///
    /// Every record is validated against the schema: valid ones are appended to
    /// <raw zone>/<dataset>, invalid ones go to <raw zone>/_quarantine/<dataset>
    /// with the reason. A file already ingested is skipped (its path, size and
    /// content hash are committed with its rows); --force ingests it again.
    #[command(after_help = INGEST_EXAMPLES)]
    File(FileArgs),
    /// Ingest Kafka topics through a consumer group, exactly once.
    ///
    /// Each batch lands in one Delta commit together with the next offset of
    /// every topic-partition it covers (a `txn` action per partition). On start
    /// and on every rebalance, partitions resume from the offsets in the table,
    /// so a killed ingest restarts without losing or duplicating a message.
    /// Several workers in one group share the partitions. A batch commits at
    /// --batch-size messages or after --max-latency, whichever comes first.
    /// Without --follow the ingest stops once every partition has been read
    /// past the end offset seen at start and to its end; with it, it runs
    /// until SIGINT or SIGTERM and commits what it holds.
    /// A message that fails to parse or validate goes to the quarantine table
    /// with its topic/partition (`source`) and offset (`position`).
    #[command(after_help = KAFKA_EXAMPLES)]
    Kafka(KafkaArgs),
    /// Ingest records from a JSON HTTP API, following its pages.
    ///
    /// The records are taken at --records-path in each response. Requests that
    /// get 429, 5xx or a network error are retried with backoff, honouring
    /// Retry-After. With --cursor-field, the highest value seen (an integer or
    /// a timestamp) is committed with the rows; the next run takes only records
    /// above it (and sends it as --cursor-param, if given).
    #[command(after_help = REST_EXAMPLES)]
    Rest(RestArgs),
    /// Ingest a table or query of PostgreSQL, MySQL/MariaDB or SQLite.
    ///
    /// Rows are streamed in batches. With --watermark, the highest value of that
    /// column (an integer or timestamp that grows on every insert and update) is
    /// committed with the rows, and the next run reads only rows above it.
    /// Without it every run reads the whole table again.
    #[command(after_help = DATABASE_EXAMPLES)]
    Database(DatabaseArgs),
}

const KAFKA_EXAMPLES: &str = "Examples:
  tarn ingest kafka -d user_events --topic user_events --brokers 127.0.0.1:9092
  tarn ingest kafka -d user_events --topic user_events --format avro --schema user_events.avsc --follow
  tarn ingest kafka -d orders --topic orders --format confluent-avro \\
      --schema-registry http://127.0.0.1:8081 --schema orders.avsc --group tarn-orders

Brokers, topics, group and format can also come from the dataset's source in tarn.yaml:
  sources:
    events_stream: {type: kafka, brokers: 127.0.0.1:9092, topics: [user_events], format: json}";

const REST_EXAMPLES: &str = "Examples:
  tarn ingest rest -d tickets --url http://127.0.0.1:8080/api/tickets --records-path data \\
      --paginate cursor:next_cursor --auth bearer:env:TICKETS_TOKEN --cursor-field updated_at
  tarn ingest rest -d users --url https://api.example.com/users --paginate page --page-size 100
  tarn ingest rest -d items --url https://api.example.com/items --paginate link --rate-limit 5

Pagination: none, page[:PARAM], offset[:PARAM[:LIMIT_PARAM]], cursor:FIELD[:PARAM], link
Auth:       bearer:env:VAR, basic:env:USER_VAR:env:PASSWORD_VAR, basic:USER:env:PASSWORD_VAR,
            header:NAME:env:VAR  (secrets are read from environment variables only)";

const DATABASE_EXAMPLES: &str = "Examples:
  tarn ingest database -d orders --url sqlite://shop.db --table orders --watermark updated_at
  tarn ingest database -d orders --url postgresql://app@db:5432/shop --table public.orders --watermark updated_at
  tarn ingest database -d big_orders --url mysql://root@127.0.0.1:3306/shop \\
      --query \"SELECT id, total, updated_at FROM orders WHERE total > 100\" --watermark updated_at";

/// Options every connector shares.
#[derive(Debug, Args)]
pub struct LandingArgs {
    /// Avro schema (.avsc) to validate against and pin. [default: the dataset's
    /// schema in tarn.yaml, else the pinned one, else derived from the source]
    #[arg(long, short = 's', value_name = "AVSC")]
    pub schema: Option<String>,
    /// Timestamp or date column whose date partitions the raw table.
    #[arg(long, value_name = "COLUMN")]
    pub partition_key: Option<String>,
    /// What to do with records that have new columns.
    #[arg(long, value_enum)]
    pub schema_evolution: Option<EvolutionArg>,
    /// Print the IngestionResult as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// Target dataset.
    #[arg(long, short = 'd')]
    pub dataset: String,
    /// Topic to read; repeatable. [default: the dataset's source, else the dataset name]
    #[arg(long, short = 't', value_name = "TOPIC")]
    pub topic: Vec<String>,
    /// Bootstrap brokers, host:port[,host:port…]. [default: the dataset's source, else 127.0.0.1:9092]
    #[arg(long, value_name = "LIST")]
    pub brokers: Option<String>,
    /// Message format. [default: json]
    #[arg(long, value_enum)]
    pub format: Option<KafkaFormatArg>,
    /// Schema-registry URL, for --format confluent-avro.
    #[arg(long, value_name = "URL")]
    pub schema_registry: Option<String>,
    /// Consumer group. [default: tarn-<dataset>]
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// Messages per Delta commit. [default: 100000]
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Longest a message waits for its commit, e.g. 500ms, 5s, 1m. [default: 5s]
    #[arg(long, value_name = "DURATION")]
    pub max_latency: Option<String>,
    /// Keep consuming until SIGINT/SIGTERM instead of stopping at the end of every partition.
    #[arg(long)]
    pub follow: bool,
    #[command(flatten)]
    pub landing: LandingArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KafkaFormatArg {
    /// One JSON object per message.
    Json,
    /// Binary Avro datums written with the dataset schema.
    Avro,
    /// Confluent wire format: magic byte, schema id, Avro datum.
    ConfluentAvro,
}

#[derive(Debug, Args)]
pub struct RestArgs {
    /// Target dataset.
    #[arg(long, short = 'd')]
    pub dataset: String,
    /// The first page's URL. [default: the dataset's source in tarn.yaml]
    #[arg(long)]
    pub url: Option<String>,
    /// Dotted path to the records in each response, e.g. data or result.items.
    #[arg(long, value_name = "PATH")]
    pub records_path: Option<String>,
    /// Pagination style (see below).
    #[arg(long, value_name = "STYLE")]
    pub paginate: Option<String>,
    /// Records per page to ask for (page and offset pagination).
    #[arg(long, value_name = "N")]
    pub page_size: Option<u32>,
    /// Authentication (see below).
    #[arg(long, value_name = "SPEC")]
    pub auth: Option<String>,
    /// Field (integer or timestamp) whose highest value is committed; later runs take only newer records.
    #[arg(long, value_name = "FIELD")]
    pub cursor_field: Option<String>,
    /// Query parameter that sends the committed cursor to the API.
    #[arg(long, value_name = "PARAM")]
    pub cursor_param: Option<String>,
    /// Most requests per second.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate_limit: Option<f64>,
    /// Retries of a request that got 429, 5xx or a network error. [default: 5]
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Extra request header, NAME:VALUE; repeatable.
    #[arg(long, value_name = "NAME:VALUE")]
    pub header: Vec<String>,
    #[command(flatten)]
    pub landing: LandingArgs,
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Target dataset.
    #[arg(long, short = 'd')]
    pub dataset: String,
    /// postgresql://…, mysql://… (MariaDB too) or sqlite://path. [default: the dataset's source]
    #[arg(long)]
    pub url: Option<String>,
    /// Table to read (schema.table allowed).
    #[arg(long, conflicts_with = "query")]
    pub table: Option<String>,
    /// A SELECT to read instead of a table.
    #[arg(long)]
    pub query: Option<String>,
    /// Column (integer or timestamp) that grows on every insert and update; enables incremental reads.
    #[arg(long, value_name = "COLUMN")]
    pub watermark: Option<String>,
    #[command(flatten)]
    pub landing: LandingArgs,
}

#[derive(Debug, Args)]
pub struct FileArgs {
    /// Target dataset.
    #[arg(long, short = 'd')]
    pub dataset: String,
    /// A file, directory or glob (local path or s3:// URL); repeatable.
    /// [default: the dataset's source in tarn.yaml]
    #[arg(long, short = 'p', value_name = "PATH")]
    pub path: Vec<String>,
    /// Avro schema (.avsc) to validate against and pin. [default: the dataset's
    /// schema in tarn.yaml, else the pinned one, else inferred from the data]
    #[arg(long, short = 's', value_name = "AVSC")]
    pub schema: Option<String>,
    /// Input format [default: from each file's extension]
    #[arg(long, short = 'f', value_enum)]
    pub format: Option<FormatArg>,
    /// Timestamp or date column whose date partitions the raw table.
    #[arg(long, value_name = "COLUMN")]
    pub partition_key: Option<String>,
    /// What to do with records that have new columns.
    #[arg(long, value_enum)]
    pub schema_evolution: Option<EvolutionArg>,
    /// CSV field delimiter.
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<char>,
    /// CSV quote character.
    #[arg(long, value_name = "CHAR")]
    pub quote: Option<char>,
    /// The CSV has no header line (columns are named col_1, col_2, ...).
    #[arg(long)]
    pub no_header: bool,
    /// A CSV value that means null (empty fields are always null).
    #[arg(long, value_name = "TEXT")]
    pub null_marker: Option<String>,
    /// Ingest files again even if they were ingested before.
    #[arg(long)]
    pub force: bool,
    /// Print the IngestionResult as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Csv,
    Ndjson,
    Json,
    Parquet,
    Avro,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EvolutionArg {
    /// Quarantine records with new columns or changed types (default).
    Strict,
    /// Add new columns as nullable and pin a new schema version.
    Additive,
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// List datasets.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a dataset: schema and its versions, tables and row counts per zone, runs.
    Show {
        /// Dataset name.
        dataset: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}
