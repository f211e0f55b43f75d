package jobs

// clade's own tables, next to River's (river_job, river_leader, ...). Names carry a
// clade_ prefix so they cannot clash with an application's tables in a shared
// Postgres database. Times are microseconds since the Unix epoch (BIGINT) so both
// backends read and write them the same way. Bytes the user or the API wrote
// (params, result lines) are stored as BLOB/BYTEA, never re-encoded.
//
// Each migration is a list of statements; a migration is applied in one
// transaction and recorded in clade_migration.

var sqliteMigrations = [][]string{
	{
		`CREATE TABLE clade_run (
			id               INTEGER PRIMARY KEY AUTOINCREMENT,
			name             TEXT    NOT NULL UNIQUE,
			input_path       TEXT    NOT NULL,
			input_size       INTEGER NOT NULL,
			input_sha256     TEXT    NOT NULL,
			created_at       INTEGER NOT NULL,
			options          BLOB,
			import_offset    INTEGER NOT NULL DEFAULT 0,
			import_line      INTEGER NOT NULL DEFAULT 0,
			imported_at      INTEGER,
			requests         INTEGER NOT NULL DEFAULT 0,
			problems         INTEGER NOT NULL DEFAULT 0
		)`,
		`CREATE TABLE clade_request (
			id               INTEGER PRIMARY KEY AUTOINCREMENT,
			run_id           INTEGER NOT NULL REFERENCES clade_run (id),
			custom_id        TEXT    NOT NULL,
			line             INTEGER NOT NULL,
			model            TEXT    NOT NULL,
			max_tokens       INTEGER NOT NULL,
			est_input_tokens INTEGER NOT NULL,
			params           BLOB    NOT NULL,
			UNIQUE (run_id, custom_id)
		)`,
		`CREATE INDEX clade_request_run_line ON clade_request (run_id, line)`,
		`CREATE TABLE clade_result (
			request_id         INTEGER PRIMARY KEY REFERENCES clade_request (id),
			run_id             INTEGER NOT NULL,
			custom_id          TEXT    NOT NULL,
			line               INTEGER NOT NULL,
			type               TEXT    NOT NULL,
			result_line        BLOB    NOT NULL,
			input_tokens       INTEGER NOT NULL DEFAULT 0,
			output_tokens      INTEGER NOT NULL DEFAULT 0,
			cache_write_5m_tokens INTEGER NOT NULL DEFAULT 0,
			cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0,
			cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
			cost_usd           REAL    NOT NULL DEFAULT 0,
			attempt            INTEGER NOT NULL DEFAULT 0,
			finished_at        INTEGER NOT NULL
		)`,
		`CREATE INDEX clade_result_run_line ON clade_result (run_id, line)`,
		`CREATE TABLE clade_problem (
			id        INTEGER PRIMARY KEY AUTOINCREMENT,
			run_id    INTEGER NOT NULL REFERENCES clade_run (id),
			line      INTEGER NOT NULL,
			custom_id TEXT    NOT NULL,
			field     TEXT    NOT NULL,
			reason    TEXT    NOT NULL
		)`,
		`CREATE INDEX clade_problem_run_line ON clade_problem (run_id, line)`,
	},
	// 2: clade_result rows go in the order they are written (a seq rowid), not by
	// request_id: batch results come in random order, and inserting them at their
	// request's place rewrote most of the table's pages in every transaction (each
	// page written about 8 times over: docs/benchmarks.md). request_id keeps its
	// uniqueness (ON CONFLICT) in an index.
	{
		`CREATE TABLE clade_result_v2 (
			seq                INTEGER PRIMARY KEY,
			request_id         INTEGER NOT NULL UNIQUE REFERENCES clade_request (id),
			run_id             INTEGER NOT NULL,
			custom_id          TEXT    NOT NULL,
			line               INTEGER NOT NULL,
			type               TEXT    NOT NULL,
			result_line        BLOB    NOT NULL,
			input_tokens       INTEGER NOT NULL DEFAULT 0,
			output_tokens      INTEGER NOT NULL DEFAULT 0,
			cache_write_5m_tokens INTEGER NOT NULL DEFAULT 0,
			cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0,
			cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
			cost_usd           REAL    NOT NULL DEFAULT 0,
			attempt            INTEGER NOT NULL DEFAULT 0,
			finished_at        INTEGER NOT NULL
		)`,
		`INSERT INTO clade_result_v2 (request_id, run_id, custom_id, line, type, result_line, input_tokens,
			output_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, cost_usd, attempt, finished_at)
		SELECT request_id, run_id, custom_id, line, type, result_line, input_tokens,
			output_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, cost_usd, attempt, finished_at
		FROM clade_result ORDER BY finished_at, request_id`,
		`DROP TABLE clade_result`,
		`ALTER TABLE clade_result_v2 RENAME TO clade_result`,
		`CREATE INDEX clade_result_run_line ON clade_result (run_id, line)`,
		// Covers Status (counts, tokens and cost by type) without reading the
		// result lines: a scan of a few MB instead of the whole table.
		`CREATE INDEX clade_result_run_type ON clade_result (run_id, type, input_tokens, output_tokens,
			cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, cost_usd)`,
	},
	// 3: outputMigration.
	outputMigration,
	// 4: workerMigration.
	workerMigration,
	// 5: spendMigration.
	spendMigration,
	// 6: batchHoldMigration.
	batchHoldMigration,
	// 7: cachePrefixMigration.
	cachePrefixMigration,
	// 8: cacheWarmMigration.
	cacheWarmMigration,
	// 9: prefixIndexMigration.
	prefixIndexMigration,
}

// Postgres stores rows in insertion order already (a heap); its migrations need
// not follow SQLite's numbering.
var postgresMigrations = [][]string{
	{
		`CREATE TABLE clade_run (
			id               BIGSERIAL PRIMARY KEY,
			name             TEXT    NOT NULL UNIQUE,
			input_path       TEXT    NOT NULL,
			input_size       BIGINT  NOT NULL,
			input_sha256     TEXT    NOT NULL,
			created_at       BIGINT  NOT NULL,
			options          BYTEA,
			import_offset    BIGINT  NOT NULL DEFAULT 0,
			import_line      BIGINT  NOT NULL DEFAULT 0,
			imported_at      BIGINT,
			requests         BIGINT  NOT NULL DEFAULT 0,
			problems         BIGINT  NOT NULL DEFAULT 0
		)`,
		`CREATE TABLE clade_request (
			id               BIGSERIAL PRIMARY KEY,
			run_id           BIGINT  NOT NULL REFERENCES clade_run (id),
			custom_id        TEXT    NOT NULL,
			line             BIGINT  NOT NULL,
			model            TEXT    NOT NULL,
			max_tokens       BIGINT  NOT NULL,
			est_input_tokens BIGINT  NOT NULL,
			params           BYTEA   NOT NULL,
			UNIQUE (run_id, custom_id)
		)`,
		`CREATE INDEX clade_request_run_line ON clade_request (run_id, line)`,
		`CREATE TABLE clade_result (
			request_id         BIGINT  PRIMARY KEY REFERENCES clade_request (id),
			run_id             BIGINT  NOT NULL,
			custom_id          TEXT    NOT NULL,
			line               BIGINT  NOT NULL,
			type               TEXT    NOT NULL,
			result_line        BYTEA   NOT NULL,
			input_tokens       BIGINT  NOT NULL DEFAULT 0,
			output_tokens      BIGINT  NOT NULL DEFAULT 0,
			cache_write_5m_tokens BIGINT NOT NULL DEFAULT 0,
			cache_write_1h_tokens BIGINT NOT NULL DEFAULT 0,
			cache_read_tokens  BIGINT  NOT NULL DEFAULT 0,
			cost_usd           DOUBLE PRECISION NOT NULL DEFAULT 0,
			attempt            BIGINT  NOT NULL DEFAULT 0,
			finished_at        BIGINT  NOT NULL
		)`,
		`CREATE INDEX clade_result_run_line ON clade_result (run_id, line)`,
		`CREATE TABLE clade_problem (
			id        BIGSERIAL PRIMARY KEY,
			run_id    BIGINT  NOT NULL REFERENCES clade_run (id),
			line      BIGINT  NOT NULL,
			custom_id TEXT    NOT NULL,
			field     TEXT    NOT NULL,
			reason    TEXT    NOT NULL
		)`,
		`CREATE INDEX clade_problem_run_line ON clade_problem (run_id, line)`,
	},
	// 2: outputMigration.
	outputMigration,
	// 3: workerMigration.
	workerMigration,
	// 4: spendMigration.
	spendMigration,
	// 5: batchHoldMigration.
	batchHoldMigration,
	// 6: cachePrefixMigration.
	cachePrefixMigration,
	// 7: cacheWarmMigration.
	cacheWarmMigration,
	// 8: prefixIndexMigration.
	prefixIndexMigration,
}

// outputMigration records which run writes which results file (ClaimOutput), so that
// no run replaces another's file. The path is absolute with symlinks resolved, per
// host: hosts sharing a Postgres store each have their own files. The same SQL on
// both backends.
var outputMigration = []string{
	`CREATE TABLE clade_output (
		host       TEXT   NOT NULL,
		path       TEXT   NOT NULL,
		run_name   TEXT   NOT NULL,
		claimed_at BIGINT NOT NULL,
		PRIMARY KEY (host, path)
	)`,
	`CREATE INDEX clade_output_run ON clade_output (run_name)`,
}

// workerMigration holds the processes working the store (Store.Register), one
// row each, so that ReleaseDead gives back only a dead one's running jobs. id is
// the worker's River client ID, the one River writes in each job's attempted_by;
// machine names the kernel boot and pid namespace, within which pid is
// meaningful; heartbeat_at and dead_at are the database's clock, dead_after (µs)
// the worker's own window. A row with dead_at set is dead for good. The same SQL
// on both backends.
var workerMigration = []string{
	`CREATE TABLE clade_worker (
		id           TEXT   NOT NULL PRIMARY KEY,
		host         TEXT   NOT NULL,
		machine      TEXT   NOT NULL,
		pid          BIGINT NOT NULL,
		started_at   BIGINT NOT NULL,
		heartbeat_at BIGINT NOT NULL,
		dead_after   BIGINT NOT NULL,
		dead_at      BIGINT
	)`,
}

// spendMigration holds what clade serve spent (Store.AddSpend): one row per scope
// (a team's or a client key's budget), period (day, week, month) and period start
// (µs since the epoch, UTC), with the sum in micro-dollars. Gateways sharing the
// store share these sums. The same SQL on both backends.
var spendMigration = []string{
	`CREATE TABLE clade_spend (
		scope        TEXT   NOT NULL,
		period       TEXT   NOT NULL,
		period_start BIGINT NOT NULL,
		micros       BIGINT NOT NULL,
		PRIMARY KEY (scope, period, period_start)
	)`,
}

// cachePrefixMigration stores each request's longest prompt-cache prefix as the
// import found it (intake.Request.Cache): its key (32 hex characters), its tokens
// under the counting rule and its TTL in seconds; NULL for a line without
// cache_control. The runner schedules by it. The same SQL on both backends.
var cachePrefixMigration = []string{
	`ALTER TABLE clade_request ADD COLUMN cache_prefix TEXT`,
	`ALTER TABLE clade_request ADD COLUMN cache_prefix_tokens BIGINT`,
	`ALTER TABLE clade_request ADD COLUMN cache_ttl BIGINT`,
}

// prefixIndexMigration indexes the head of each prompt-cache prefix (its first
// line), for BatchPending's order: one index seek per request. Partial: a run
// without cache_control adds nothing to it. IF NOT EXISTS: stores opened by
// earlier versions have it already (PrepareBatches created it). The same SQL on
// both backends.
var prefixIndexMigration = []string{
	`CREATE INDEX IF NOT EXISTS clade_request_run_prefix ON clade_request (run_id, cache_prefix, line)
		WHERE cache_prefix IS NOT NULL`,
}
