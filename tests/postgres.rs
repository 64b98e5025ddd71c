//! The conformance suite on PostgreSQL, plus what only PostgreSQL does.

mod common;
mod conformance;

use common::Backend;

const PG: Backend = Backend::Postgres;

conformance_tests! { PG;
    install::dry_run_prints_the_sql_and_changes_nothing,
    install::a_second_install_changes_nothing,
    install::object_flag_limits_the_install,
    install::uninstall_reverses_the_install,
    install::awkward_identifiers_are_quoted,
    install::a_table_without_primary_key_needs_keys,
    install::missing_tables_and_key_columns_are_named,
    capture::triggers_write_one_event_per_change,
    capture::a_key_change_is_a_delete_and_a_create,
    capture::keys_round_trip_through_the_database,
    capture::keys_with_other_delimiters_round_trip,
    capture::random_keys_round_trip_through_the_database,
    delivery::drain_delivers_business_objects_with_json_types,
    delivery::bytes_are_base64,
    delivery::unsubscribed_malformed_unknown_and_missing_events_are_archived,
    delivery::subscriptions_and_targeted_events,
    delivery::http_retries_transient_failures_then_delivers,
    delivery::a_rejected_event_fails_and_replay_sends_it_again,
    delivery::exhausted_attempts_end_as_failed,
    delivery::replay_filters_select_archived_events,
    delivery::status_reports_backlog_and_failures,
    delivery::archive_false_keeps_only_failures,
    delivery::very_large_rows_are_delivered_intact,
    delivery::poll_wakes_up_delivers_and_stops_on_sigterm,
    faults::kill_9_mid_drain_loses_nothing,
    faults::two_drains_deliver_nothing_twice_and_keep_key_order,
    faults::configuration_errors_exit_2_naming_file_line_and_key,
    faults::an_unreachable_database_exits_1,
}

/// A poller whose database connection is killed reconnects, and nothing is lost.
#[test]
fn poll_survives_a_lost_connection() {
    use std::time::Duration;
    let Some((env, out)) = conformance::hr(PG, "") else {
        return;
    };
    let mut poller = env.spawn(&["poll", "--interval", "200ms"]);
    env.db.execute("INSERT INTO department VALUES (1, 'a')");
    assert!(conformance::eventually(Duration::from_secs(10), || {
        common::lines(&out).len() == 1
    }));
    env.db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'trigpoll' AND datname = current_database()",
    );
    env.db.execute("INSERT INTO department VALUES (2, 'b')");
    assert!(
        conformance::eventually(Duration::from_secs(20), || common::lines(&out).len() == 2),
        "the poller did not come back after losing its connection"
    );
    std::process::Command::new("kill")
        .args(["-TERM", &poller.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(poller.wait().unwrap().code(), Some(0));
    assert_eq!(env.db.count("SELECT count(*) FROM {events}"), 0);
}
