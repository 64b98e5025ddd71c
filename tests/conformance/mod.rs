//! The conformance suite: every test takes a backend, and each backend's test file runs all of
//! them through `conformance_tests!`.

use std::time::{Duration, Instant};

use crate::common::{Backend, Env};

pub mod bad_events;
pub mod capture;
pub mod delivery;
pub mod faults;
pub mod hot_keys;
pub mod install;
pub mod operations;
pub mod reload;
pub mod rules;
pub mod settings;
pub mod shapes;

/// Declares one `#[test]` per conformance test for a backend: `conformance_tests!(backend);`.
#[macro_export]
macro_rules! conformance_tests {
    ($backend:expr) => {
        $crate::conformance_tests!(@each $backend;
            install::dry_run_prints_the_sql_and_changes_nothing,
            install::a_second_install_changes_nothing,
            install::object_flag_limits_the_install,
            install::uninstall_reverses_the_install,
            install::unconfigured_triggers_are_removed_alone,
            install::awkward_identifiers_are_quoted,
            install::a_table_without_primary_key_needs_keys,
            install::missing_tables_and_key_columns_are_named,
            install::status_reports_triggers_that_fail_writes_and_uninstall_removes_them,
            install::a_renamed_object_leaves_nothing_behind,
            bad_events::bad_events_a_key_of_a_megabyte,
            bad_events::bad_events_keys_with_invalid_escapes,
            bad_events::bad_events_keys_with_control_characters,
            bad_events::bad_events_keys_without_equals,
            bad_events::bad_events_unknown_verbs,
            bad_events::bad_events_extreme_priorities,
            bad_events::bad_events_outbox_payloads_that_are_not_objects,
            bad_events::bad_events_an_outbox_payload_of_100_mb,
            bad_events::bad_events_an_unknown_connector_id,
            bad_events::bad_events_a_replay_of_nothing,
            bad_events::bad_events_claims_nobody_holds,
            bad_events::bad_events_statuses_of_no_event,
            capture::triggers_write_one_event_per_change,
            capture::upserts_merges_and_writable_ctes_make_their_events,
            capture::a_key_change_is_a_delete_and_a_create,
            capture::keys_round_trip_through_the_database,
            capture::keys_with_other_delimiters_round_trip,
            capture::random_keys_round_trip_through_the_database,
            delivery::drain_delivers_business_objects_with_json_types,
            delivery::bytes_are_base64,
            delivery::unsubscribed_malformed_unknown_and_missing_events_are_archived,
            delivery::subscriptions_and_targeted_events,
            delivery::http_retries_transient_failures_then_delivers,
            delivery::http_standard_webhooks_in_batches,
            delivery::a_rejected_event_fails_and_replay_sends_it_again,
            delivery::exhausted_attempts_end_as_failed,
            delivery::replay_filters_select_archived_events,
            delivery::status_reports_backlog_and_failures,
            delivery::archive_false_keeps_only_failures,
            delivery::very_large_rows_are_delivered_intact,
            delivery::drain_stops_at_max_events,
            delivery::poll_wakes_up_delivers_and_stops_on_sigterm,
            delivery::poll_lingers_after_a_partial_batch_and_drain_does_not,
            faults::kill_9_mid_drain_loses_nothing,
            faults::two_drains_deliver_nothing_twice_and_keep_key_order,
            faults::a_finish_leaves_events_another_poller_took_over,
            faults::configuration_errors_exit_2_naming_file_line_and_key,
            faults::an_unreachable_database_exits_1,
            faults::sigterm_gives_up_a_batch_stuck_on_a_slow_receiver,
            faults::a_batch_that_outlives_its_claim_stays_its_pollers,
            faults::drain_max_time_gives_up_a_batch_stuck_on_a_slow_receiver,
            hot_keys::writers_reinserting_keys_beside_two_pollers_keep_each_keys_order,
            hot_keys::five_thousand_events_of_one_key_two_pollers_in_order_once,
            hot_keys::a_transient_failure_holds_the_rest_of_its_keys_run,
            hot_keys::coalesce_folds_a_run_and_archives_every_event,
            hot_keys::an_urgent_event_takes_its_keys_earlier_events_along,
            hot_keys::urgent_events_behind_lower_priorities_do_not_stall_a_claim,
            hot_keys::a_claim_ahead_does_not_pass_events_held_behind_its_own_retry,
            hot_keys::an_inherited_retry_keeps_its_held_events_first,
            operations::prune_deletes_old_rows_in_batches_and_keeps_failures,
            operations::poll_metrics_count_events_steps_and_backlog,
            operations::replay_refuses_rows_of_connectors_no_longer_configured,
            operations::check_reports_tables_drift_and_unreachable_connectors,
            reload::sighup_reloads_connectors_while_events_flow,
            rules::the_first_matching_rule_decides_verb_priority_and_comment,
            rules::child_rules_choose_the_parents_event,
            rules::rules_are_checked_shown_and_part_of_the_fingerprint,
            rules::custom_verbs_are_subscribed_counted_replayed_and_not_coalesced,
            rules::tables_of_an_earlier_version_are_upgraded_with_their_events,
            rules::a_keys_events_of_different_priorities_keep_its_order,
            rules::when_decides_before_the_rules,
            settings::a_no_op_update_makes_no_event,
            settings::track_and_ignore_choose_the_changes_that_matter,
            settings::excluded_attributes_never_leave_the_database,
            settings::changes_carry_old_and_new_values_with_their_types,
            settings::changes_of_a_table_with_many_columns,
            settings::when_conditions_decide_per_verb,
            settings::when_conditions_keep_the_backends_quoted_strings,
            settings::a_wrong_when_condition_is_refused_before_anything_is_installed,
            settings::missing_setting_columns_are_refused_before_anything_is_installed,
            settings::ignored_users_and_the_session_switch_make_no_event,
            settings::children_travel_with_their_object,
            settings::a_child_named_like_a_column_takes_its_place,
            settings::outbox_objects_deliver_their_payload,
            settings::quoted_table_names_are_found,
            settings::a_changed_setting_is_drift_until_installed,
            shapes::images_are_the_fetched_rows_whatever_the_writers_session,
            shapes::generated_columns_travel_and_count_in_track,
            shapes::columns_named_like_the_triggers_own_are_captured,
            shapes::keys_of_any_length_never_fail_a_write,
        );
    };
    (@each $backend:expr; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                conformance::$module::$name($backend);
            }
        )*
    };
}

/// The sample schema most tests use.
pub const HR: &str = "
CREATE TABLE department (dept_id int PRIMARY KEY, name {text} NOT NULL);
CREATE TABLE employee (emp_id int PRIMARY KEY, last_name {text}, dept_id int, salary {dec},
    photo {bytes}, hired {ts}, active boolean);
CREATE TABLE order_line (contract_id int NOT NULL, header_id {text} NOT NULL, qty int,
    PRIMARY KEY (contract_id, header_id));
";

pub const HR_OBJECTS: &str = r#"
[[object]]
name = "Employee"
table = "employee"
priority = 1

[[object]]
name = "Department"
table = "department"

[[object]]
name = "OrderLine"
table = "order_line"
"#;

/// An environment with the HR schema, its triggers installed and one file connector `out`.
pub fn hr(backend: Backend, poll: &str) -> Option<(Env, std::path::PathBuf)> {
    let env = Env::new(backend)?;
    env.db.execute(HR);
    env.config(poll, HR_OBJECTS);
    let out = env.file_connector("out");
    env.run_ok(&["install-triggers"], 0);
    Some((env, out))
}

/// Waits until `done` holds, for at most `limit`.
pub fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}
