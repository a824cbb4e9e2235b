"""The results schema, as an ordered list of migrations. Documented in docs/schema.md.

Migration i brings the database from schema version i to i+1; never edit a released migration, append one.
"""

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)""",
        """CREATE TABLE suites (
            suite_hash VARCHAR PRIMARY KEY, suite VARCHAR NOT NULL, version VARCHAR NOT NULL,
            spec JSON NOT NULL, registered_at TIMESTAMP NOT NULL)""",
        """CREATE TABLE models (
            model_key VARCHAR PRIMARY KEY, suite_hash VARCHAR NOT NULL, role VARCHAR NOT NULL,
            task VARCHAR, spec JSON NOT NULL)""",
        """CREATE TABLE methods (
            name VARCHAR NOT NULL, kind VARCHAR NOT NULL, source VARCHAR NOT NULL, hparams JSON NOT NULL,
            needs JSON NOT NULL, paper VARCHAR, code_url VARCHAR, authors VARCHAR, code_hash VARCHAR,
            updated_at TIMESTAMP NOT NULL, PRIMARY KEY (name, kind))""",
        """CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY, suite VARCHAR NOT NULL, suite_hash VARCHAR NOT NULL,
            tracks VARCHAR NOT NULL, command VARCHAR NOT NULL, config_hash VARCHAR NOT NULL,
            git_commit VARCHAR, mergesec_version VARCHAR NOT NULL, packages JSON NOT NULL,
            hardware JSON NOT NULL, started_at TIMESTAMP NOT NULL, ended_at TIMESTAMP,
            status VARCHAR NOT NULL, units_total INTEGER, units_run INTEGER, error VARCHAR)""",
        """CREATE TABLE units_done (
            unit_key VARCHAR PRIMARY KEY, track VARCHAR NOT NULL, suite_hash VARCHAR NOT NULL,
            run_id VARCHAR NOT NULL, description JSON NOT NULL, seconds DOUBLE, finished_at TIMESTAMP NOT NULL)""",
        """CREATE TABLE merge_eval (
            unit_key VARCHAR NOT NULL, suite VARCHAR NOT NULL, suite_hash VARCHAR NOT NULL,
            method VARCHAR NOT NULL, hparams JSON NOT NULL, seed INTEGER NOT NULL, task VARCHAR NOT NULL,
            n INTEGER NOT NULL, clean_acc DOUBLE NOT NULL, finetuned_acc DOUBLE NOT NULL,
            pretrained_acc DOUBLE NOT NULL, normalized_acc DOUBLE NOT NULL, merge_seconds DOUBLE NOT NULL)""",
        """CREATE TABLE transfer_settings (
            unit_key VARCHAR NOT NULL, suite VARCHAR NOT NULL, suite_hash VARCHAR NOT NULL,
            method VARCHAR NOT NULL, task VARCHAR NOT NULL, attack VARCHAR NOT NULL,
            surrogate VARCHAR NOT NULL, seed INTEGER NOT NULL, eps DOUBLE NOT NULL, n INTEGER NOT NULL,
            n_subset INTEGER NOT NULL, clean_acc_surrogate DOUBLE NOT NULL, clean_acc_target DOUBLE NOT NULL,
            asr_whitebox DOUBLE, asr_transfer DOUBLE, relative_asr DOUBLE,
            asr_whitebox_all DOUBLE, asr_transfer_all DOUBLE, grad_cosine DOUBLE, cka DOUBLE)""",
        """CREATE TABLE transfer_outcomes (
            unit_key VARCHAR NOT NULL, suite_hash VARCHAR NOT NULL, method VARCHAR NOT NULL,
            task VARCHAR NOT NULL, attack VARCHAR NOT NULL, surrogate VARCHAR NOT NULL, seed INTEGER NOT NULL,
            example_id INTEGER NOT NULL, label INTEGER NOT NULL,
            surrogate_clean_correct BOOLEAN NOT NULL, target_clean_correct BOOLEAN NOT NULL,
            surrogate_adv_correct BOOLEAN NOT NULL, target_adv_correct BOOLEAN NOT NULL)""",
        """CREATE TABLE backdoor_settings (
            unit_key VARCHAR NOT NULL, suite VARCHAR NOT NULL, suite_hash VARCHAR NOT NULL,
            attack VARCHAR NOT NULL, variant VARCHAR NOT NULL, method VARCHAR NOT NULL,
            defense VARCHAR NOT NULL, adversary_task VARCHAR NOT NULL, target_task VARCHAR NOT NULL,
            target_class INTEGER NOT NULL, seed INTEGER NOT NULL, clean_acc DOUBLE NOT NULL,
            backdoor_asr DOUBLE NOT NULL, n_asr INTEGER NOT NULL)""",
        """CREATE TABLE backdoor_task_acc (
            unit_key VARCHAR NOT NULL, suite_hash VARCHAR NOT NULL, attack VARCHAR NOT NULL,
            variant VARCHAR NOT NULL, method VARCHAR NOT NULL, defense VARCHAR NOT NULL,
            seed INTEGER NOT NULL, task VARCHAR NOT NULL, clean_acc DOUBLE NOT NULL)""",
        """CREATE TABLE backdoor_outcomes (
            unit_key VARCHAR NOT NULL, suite_hash VARCHAR NOT NULL, attack VARCHAR NOT NULL,
            variant VARCHAR NOT NULL, method VARCHAR NOT NULL, defense VARCHAR NOT NULL,
            seed INTEGER NOT NULL, example_id INTEGER NOT NULL, label INTEGER NOT NULL,
            triggered_pred INTEGER NOT NULL, hit BOOLEAN NOT NULL)""",
        """CREATE TABLE reproductions (
            subject VARCHAR NOT NULL, suite_hash VARCHAR NOT NULL, verdict VARCHAR NOT NULL,
            max_abs_diff DOUBLE, n_compared INTEGER NOT NULL, tolerance DOUBLE NOT NULL,
            details JSON NOT NULL, checked_at TIMESTAMP NOT NULL, run_id VARCHAR)""",
        """CREATE VIEW transfer_metrics AS SELECT suite, suite_hash, method, task, attack, surrogate, seed, n,
            clean_acc_surrogate, clean_acc_target, asr_whitebox, asr_transfer, relative_asr, eps, n_subset,
            asr_whitebox_all, asr_transfer_all, grad_cosine, cka FROM transfer_settings""",
        """CREATE VIEW transfer_examples AS SELECT suite_hash, method, task, attack, surrogate, seed,
            example_id, label, surrogate_clean_correct, target_clean_correct, surrogate_adv_correct,
            target_adv_correct, (surrogate_clean_correct AND target_clean_correct) AS counted
            FROM transfer_outcomes""",
        """CREATE VIEW backdoor_metrics AS SELECT suite, suite_hash, attack, variant, method, defense,
            adversary_task, target_task, target_class, seed, clean_acc, backdoor_asr, n_asr
            FROM backdoor_settings""",
        """CREATE VIEW backdoor_examples AS SELECT * EXCLUDE (unit_key) FROM backdoor_outcomes""",
    ],
    # 2: which process drives a run, so a run left `running` by a killed driver is marked interrupted
    [
        "ALTER TABLE runs ADD COLUMN driver_host VARCHAR",
        "ALTER TABLE runs ADD COLUMN driver_pid INTEGER",
    ],
    # issue 15 (paper scale): a fine-tuned model with 0% accuracy (the smoke suite's random weights) has no
    # normalised accuracy; it is stored as NULL instead of failing the run.
    [
        """ALTER TABLE merge_eval ALTER COLUMN normalized_acc DROP NOT NULL""",
    ],
    [  # backdoor 2.0 (issue 14): the untriggered floor of every ASR, and attack vs baseline rows
        "ALTER TABLE backdoor_settings ADD COLUMN asr_floor DOUBLE",
        "ALTER TABLE backdoor_settings ADD COLUMN role VARCHAR",
        "ALTER TABLE backdoor_outcomes ADD COLUMN clean_pred INTEGER",
        "DROP VIEW backdoor_metrics",
        """CREATE VIEW backdoor_metrics AS SELECT suite, suite_hash, attack, variant, method, defense,
            adversary_task, target_task, target_class, seed, clean_acc, backdoor_asr, n_asr, asr_floor,
            backdoor_asr - asr_floor AS asr_minus_floor,
            coalesce(role, CASE WHEN attack LIKE 'clean%' THEN 'baseline' ELSE 'attack' END) AS role
            FROM backdoor_settings""",
        "DROP VIEW backdoor_examples",
        """CREATE VIEW backdoor_examples AS SELECT * EXCLUDE (unit_key) FROM backdoor_outcomes""",
    ],
    [  # issue 17: a digest of each unit's rows; a reproduction records the digest of the rows it checked
        "ALTER TABLE units_done ADD COLUMN rows_digest VARCHAR",
        "ALTER TABLE reproductions ADD COLUMN rows_digest VARCHAR",
    ],
    [  # issue 18: per-example transfer rows carry their setting's eps (a setting is task x attack x surrogate x eps)
        """CREATE OR REPLACE VIEW transfer_examples AS SELECT o.suite_hash, o.method, o.task, o.attack,
            o.surrogate, s.eps, o.seed, o.example_id, o.label, o.surrogate_clean_correct,
            o.target_clean_correct, o.surrogate_adv_correct, o.target_adv_correct,
            (o.surrogate_clean_correct AND o.target_clean_correct) AS counted
            FROM transfer_outcomes o JOIN transfer_settings s
            USING (unit_key, suite_hash, method, task, attack, surrogate, seed)""",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)

RESULT_TABLES = frozenset({
    "merge_eval", "transfer_settings", "transfer_outcomes", "backdoor_settings", "backdoor_task_acc",
    "backdoor_outcomes",
})
