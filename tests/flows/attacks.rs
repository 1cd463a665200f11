//! The attack suite: one test per attack, each asserting that the attack fails.
//!
//! Attacks already covered elsewhere are listed here with their tests, so this map is the whole
//! picture; the tests in this file are the attacks no other module tries.
//!
//! | Attack | Test |
//! |---|---|
//! | Open redirect: unregistered or look-alike URI (case, trailing dot, userinfo, port, encoding, whitespace, fragment) | `authorize::unregistered_and_look_alike_redirect_uris_are_refused_without_redirect`, `authorize::loopback_redirects_accept_any_port_but_not_another_host` |
//! | Open redirect: unsafe URI at registration (`http`, `file:`, credentials, fragment) | `register::redirect_uris_must_be_https_or_loopback_without_fragment` |
//! | Open redirect: `javascript:`/`data:`/`vbscript:` in any spelling, at registration and at authorize | `attacks::script_scheme_redirects_are_refused_at_registration_and_authorize` |
//! | Unknown client: error page, never a redirect | `authorize::unknown_client_gets_an_error_page_never_a_redirect` |
//! | PKCE downgrade (`plain`, no method) and missing or malformed challenge | `authorize::pkce_challenge_is_required`, `authorize::pkce_plain_and_missing_method_are_refused`, `authorize::malformed_challenge_is_refused`, `token::verifier_syntax_is_checked` |
//! | Code injection: another public client, a wrong verifier, another redirect URI | `token::code_is_bound_to_its_client_verifier_and_redirect_uri`, `token::a_replay_by_someone_else_revokes_nothing` |
//! | Code injection by an authenticated confidential client | `attacks::a_confidential_client_cannot_redeem_another_clients_code` |
//! | Code replay, and racing redemptions | `token::code_is_single_use_and_replay_revokes_what_it_issued`, `token::concurrent_redemptions_of_one_code_yield_one_token` |
//! | Refresh reuse after the grace window; racing strict refreshes; another client's refresh token | `token::reuse_after_the_grace_window_revokes_the_grant`, `token::strict_concurrent_refresh_has_one_winner_and_then_revokes`, `token::refresh_token_is_bound_to_its_client_and_can_only_narrow_scope` |
//! | Refresh token replayed within the grace window to fork a chain: owner and thief racing, a retry after the chain moved on | `refresh_chain::an_owner_and_a_thief_share_one_chain_on_memory` (and `_on_sqlite`, `_on_redis`), `refresh_chain::retries_within_the_grace_window_get_the_pair_the_first_rotation_issued`, `refresh_chain::a_retry_after_its_successor_was_rotated_revokes_the_grant`, `refresh_chain::a_retry_racing_the_rotation_waits_for_its_pair`, `refresh_chain::a_rotation_that_failed_midway_is_redone_once_by_its_retries`, `refresh_chain::a_rotation_slower_than_its_retry_still_yields_one_chain` |
//! | Token for another resource | `token::foreign_resource_at_the_token_endpoint_is_invalid_target`, `bearer::a_token_for_another_resource_is_refused`, `authorize::resource_is_tolerant_of_slash_and_absence_but_refuses_a_foreign_one` |
//! | Forged, expired, query-string or doubled bearer tokens | `bearer::bad_tokens_are_401_invalid_token_with_the_metadata_url`, `bearer::expired_tokens_are_refused`, `bearer::tokens_only_in_the_header_and_only_one_header` |
//! | A plain `OPTIONS` to a guarded route that answers every method (`any()`, the standalone `bearer_layer()`) runs the handler without a token | `bearer::a_plain_options_needs_a_token_and_only_a_preflight_passes` |
//! | The MCP routes' fallback served without a token (`oauth.router(Router::new().fallback(..))`) | `fallback::a_fallback_of_the_mcp_routes_is_behind_the_guard`, `fallback::the_fallback_of_a_nested_router_is_behind_the_guard`, `fallback::without_a_fallback_unknown_paths_are_404_with_or_without_a_token` |
//! | Setup token brute force (failure budget, then 429 even for the right token) | `rate_limits::guessing_the_setup_token_is_held_to_the_failure_budget`, `passkeys::a_wrong_setup_token_is_refused` |
//! | Client secret brute force | `rate_limits::guessing_a_client_secret_is_held_to_the_failure_budget` |
//! | Client secret brute force by a burst of concurrent guesses (all pass a check-then-record budget) | `floods::a_burst_of_concurrent_wrong_secrets_is_held_to_the_failure_budget` |
//! | Concurrent right requests of one busy client (or a public client) refused 429 while they wait on the store or a metadata document | `outside_review::concurrent_correct_requests_of_one_client_are_not_refused_429_on_{sqlite,redis}`, `outside_review::concurrent_requests_of_one_registered_public_client_are_not_refused_429_on_redis`, `outside_review::concurrent_token_requests_of_a_public_metadata_document_client_are_not_refused_429` |
//! | A flood of fresh failure-budget keys to wipe a spent budget and guess again | `oauth::budget::tests::a_flood_of_fresh_keys_does_not_forget_a_spent_budget` (in the crate) |
//! | A rotation failing midway, a revocation racing a retry, another client's replay within the grace window | `outside_review::a_rotation_failing_midway_leaves_one_chain_on_{memory,sqlite,redis}`, `outside_review::a_retry_racing_a_revocation_hands_out_nothing_that_works`, `outside_review::a_retry_by_another_client_neither_gets_the_pair_nor_revokes` |
//! | Denial by shared address: made-up client ids from a NAT, a hosted client's egress or an untrusted proxy stop every client's refresh there | `budgets::unknown_client_ids_from_a_shared_address_do_not_stop_a_real_clients_refresh` |
//! | Denial by shared address: guessing one client's secret locks out another client (and a guessed client's right secret still 429: no oracle) | `budgets::guessing_one_clients_secret_does_not_lock_out_another_client` |
//! | Denial by shared address: client-credential failures lock the owner out of enrolment and console sign-in; setup-token guesses lock out the owner and clients | `budgets::client_credential_failures_never_lock_the_owner_out`, `budgets::setup_token_guesses_do_not_lock_the_owner_or_clients_out` |
//! | Denial by shared address through a public client's id (shared by every user of a metadata-document client): secrets sent with it spend its users' budget | `budgets::a_public_clients_failures_spend_no_budget` |
//! | Guessing the owner's sign-in (forged assertions): held to the owner's budget, then 429 even for the owner, clients unaffected | `budgets::failed_sign_ins_are_held_to_the_owners_budget` |
//! | A huge configured duration (`rate_limits.failures.window_secs = u64::MAX`): the first failed credential panics the connection and the budget is silently off; a huge rate-limit burst overflows governor | `rate_limits::a_failure_window_past_a_day_fails_the_build_and_a_days_window_still_holds`; in the crate `config::tests::a_huge_duration_is_refused_by_name` (every duration field), `config::tests::a_huge_rate_limit_is_refused_by_name`, `oauth::budget::tests::a_window_past_the_limit_is_held_to_a_day_and_never_overflows`, `http::refusals::tests::a_tier_past_the_limit_is_held_to_it_and_never_overflows` |
//! | A proxy on loopback not in `trusted_proxies`: every client is the proxy, silently | `proxies::forwarded_requests_from_loopback_without_trusted_proxies_are_warned_of_once` |
//! | Flooding the MCP routes with missing or forged tokens (each a hash, a store read, a connection-doctor entry) | `floods::refused_mcp_requests_spend_a_per_address_budget_then_429_before_any_work` |
//! | Setup token raced by two registrations | `passkeys::two_registrations_racing_on_one_setup_token_yield_one_passkey` |
//! | Used setup token replayed after its passkey is removed and the server restarted | `passkeys::a_used_setup_token_stays_used_after_its_passkey_is_removed_and_a_restart` (and `_in_sqlite_`, `_in_redis_`) |
//! | WebAuthn: a stranger's or forged assertion | `passkeys::a_stranger_passkey_cannot_approve` |
//! | WebAuthn: the owner's credential ids and their number read from the assertion options served to anyone (consent page, console sign-in, enrolment approval) | `passkeys::assertion_options_name_none_of_the_owners_passkeys` |
//! | WebAuthn: a stranger's discoverable passkey for the same relying party, with its own or the owner's user handle | `passkeys::a_strangers_discoverable_passkey_cannot_approve`, `console::passkeys_are_renamed_added_and_removed_but_never_the_last` (a removed passkey still signs; it is refused) |
//! | WebAuthn: approvals finishing together with a console rename, a stale read written last putting the sign counter back or losing the rename | `console::a_rename_racing_approvals_is_kept_and_the_counter_never_goes_back`; store contract `conformance::passkey_modify`, `passkey_concurrent_uses_and_a_rename_are_all_kept` (every backend, `tests/stores`); no rewrite for an unchanged use `tests/stores/passkey_file.rs`: `a_use_that_changes_nothing_does_not_rewrite_the_file` |
//! | WebAuthn: an assertion spent on another request or purpose | `passkeys::an_assertion_approves_only_the_request_it_was_made_for_and_only_once`, `console::a_sign_in_assertion_cannot_approve_a_client_and_an_approval_cannot_sign_in` |
//! | A console session kept after its passkey was removed (through the console or the Rust API) | `console::a_session_whose_passkey_was_removed_elsewhere_can_do_nothing`, `console::passkeys_are_renamed_added_and_removed_but_never_the_last`; in the crate `presence::session::tests::a_session_ends_with_the_passkey_that_signed_in` |
//! | An enrolment finished after the passkey that approved it (by assertion or through its console session) was removed | `outside_review_architecture::an_enrolment_started_from_a_console_session_ends_with_its_passkey`, `outside_review_architecture::an_enrolment_approved_by_a_removed_passkey_does_not_finish` |
//! | Two removals racing on the last two passkeys leaving none (the owner locked out) | `outside_review_architecture::racing_removals_of_the_last_two_passkeys_leave_one_on_redis` |
//! | A refresh retry judged against the store's clock instead of the server's (a manual clock ahead revoked grants) | `outside_review_architecture::the_refresh_grace_window_runs_on_the_servers_clock`; store contract `conformance::token_consume_then_replayed` (the first consume's `now` is returned, every backend) |
//! | An approval, a console sign-in, an enrolment approval or a live console session written by hand, copied or deserialised instead of verified (a handler that skips the passkey check) | `compile_fail` examples on `mcp_oauth::fuzzing::presence` (`src/fuzzing.rs`, run by `cargo test --all-features --doc`) |
//! | WebAuthn: an assertion made for another origin | `attacks::an_assertion_made_for_another_origin_is_refused` |
//! | WebAuthn: a registration made for another origin | `attacks::a_passkey_made_for_another_origin_is_not_registered` |
//! | WebAuthn: a replayed assertion under a fresh challenge, or a spent ceremony | `attacks::a_replayed_assertion_is_refused_under_any_ceremony` |
//! | CSRF on the consent page's endpoints | `authorize::approval_endpoints_refuse_cross_site_requests` |
//! | CSRF on the console | `console::every_operation_needs_a_session_and_its_csrf_token` |
//! | Deleting a client while it refreshes, exchanges a code or is being approved: the grant whose record is being rewritten escapes the console's listing, and its tokens outlive the client | `client_deletion::a_refresh_racing_the_clients_deletion_leaves_no_live_token`, `client_deletion::a_code_exchange_racing_the_clients_deletion_leaves_no_live_token`, `client_deletion::metadata_document_clients::a_code_approved_as_its_client_is_deleted_is_refused`, `client_deletion::metadata_document_clients::a_deleted_metadata_document_client_approved_again_works_until_deleted_again` |
//! | Clickjacking: every HTML page refuses framing | `attacks::every_html_page_refuses_to_be_framed` |
//! | XSS through `client_name` | `authorize::consent_page_shows_the_client_and_escapes_what_it_says`, `console::the_console_escapes_what_clients_say_about_themselves` |
//! | XSS through every client-supplied field (name, URI, redirect, scope, state) on every page | `attacks::client_supplied_fields_are_escaped_on_every_page` |
//! | Header injection through `state` (CR/LF) | `attacks::state_cannot_inject_headers_and_stays_encoded_in_the_redirect` |
//! | Oversize bodies and deeply nested JSON | `malformed::oversize_bodies_are_413`, `malformed::deeply_nested_json_is_a_4xx` |
//! | Malformed input anywhere, malformed WebAuthn payloads | `malformed::*`, `properties::*` |
//! | Flooding a route that landed in a looser rate-limit tier than it needs, or in none (a route added, or moved, without its tier) | `http::routes::tests::every_route_is_held_to_its_tier` (in the crate: every path, both methods, over HTTP), `http::routes::tests::every_path_has_an_expected_tier` |
//! | Registration flooding: per-address rate limit, spoofed `X-Forwarded-For` | `rate_limits::a_flood_gets_429_with_retry_after_then_other_addresses_still_pass`, `rate_limits::forwarded_for_is_ignored_unless_the_proxy_is_trusted` |
//! | Every client keyed to the proxy (a dual-stack `[::]` listener sees it as `::ffff:127.0.0.1`; hops in mapped form), so one client's failures lock out all | `proxies::forwarded_clients_are_keyed_apart_on_both_stacks` |
//! | Registration flooding from many addresses: bounded memory, refused (never evicting) past the store's capacity, cleared by the owner | `attacks::a_registration_flood_is_refused_at_the_store_capacity_until_the_owner_clears_it` |
//! | A registration flood (more than the cap, or than the memory store holds) evicting or hiding an approved client, on memory, SQLite and Redis | `registrations::a_flood_cannot_evict_an_approved_client_from_memory`, `…_from_sqlite`, `…_from_postgres`, `…_from_redis`; store contract `conformance::client_unapproved_cap_refuses_without_evicting`, `client_concurrent_unapproved_inserts_respect_the_cap` (every backend, `tests/stores`) |
//! | Unapproved registrations kept for the full client lifetime; an approved client still counted or short-lived | `registrations::approval_frees_a_place_and_unapproved_registrations_lapse_on_memory`, `…_on_sqlite`, `…_on_redis` |
//! | Registrations made as large as the per-value limits allow (20 × 2,000-byte redirect URIs) | `limits::redirect_uris_are_bounded_in_all_at_registration` |
//! | The console made unusable by a flood of clients | `console::the_console_pages_its_clients_and_removes_the_never_approved_in_bulk` |
//! | Oversized `state` (60,000 bytes) kept until the owner decides | `limits::an_oversized_state_gets_no_consent_page_stores_nothing_and_is_not_echoed` |
//! | Oversized `scope` or `resource` on `/authorize` | `limits::oversized_scope_and_resource_are_invalid_request_with_the_state_echoed` |
//! | Oversized `client_id` or `redirect_uri` on `/authorize` | `limits::an_oversized_client_id_or_redirect_uri_gets_the_error_page_and_stores_nothing` |
//! | Oversized client metadata kept for the client's lifetime (each field, redirect URI count and length) | `limits::every_stored_metadata_field_is_bounded_at_registration` |
//! | Oversized field in a client metadata document | `cimd::bad_documents_get_the_error_page_and_invalid_client` |
//! | Registration and metadata-document rules drifting apart (a redirect-URI list or name refused on one path and kept on the other) | `cimd::registration_and_metadata_documents_share_their_limits` (and `oauth::client_format::tests::every_limit_holds_at_its_edge`, `cimd::document::tests::a_document_is_held_to_the_shared_limits` in the crate) |
//! | A flood of the largest records a stranger can create, against the memory store | `tests/stores/memory.rs`: `byte_budget::a_flood_of_large_pending_requests_stays_within_the_byte_budget`, `byte_budget::a_flood_of_large_clients_stays_within_the_byte_budget`; over HTTP `limits::a_flood_of_large_pending_requests_keeps_approved_tokens_within_the_byte_budget` |
//! | Console ceremony starts (no secret) flooded at the general tier's rate | `rate_limits::starting_a_ceremony_without_a_secret_is_held_to_the_auth_tier` |
//! | Introspection by a self-registered confidential client | `introspect::a_self_registered_client_with_a_secret_cannot_introspect`, `introspect::the_configured_resource_servers_and_only_they_may_introspect` |
//! | A refresh token introspected as if it were an access token (another client's; no `token_type`) | `introspect::a_resource_server_sees_another_clients_refresh_token_as_inactive`, `introspect::every_active_answer_has_a_token_type_and_own_refresh_tokens_are_marked` |
//! | Secrets at rest or in logs | `secrets::stores_hold_hashes_and_logs_hold_no_secret`, `secrets::live_tokens_are_stored_under_their_hash_only` |
//! | Secrets printed by `{:?}` of the configuration, the builder or the layer | `secrets::debug_output_of_public_types_holds_no_secret` |
//! | A stalling metadata-document host holding every fetch slot, starving other clients' documents | `cimd::a_stalling_host_cannot_starve_the_fetches_of_other_hosts` (and `cimd::fetch::tests::waiting_for_a_slot_does_not_count_against_the_time_limit` in the crate) |
//! | A document host that is down, slow or overloaded read as "invalid client" (clients would drop their tokens) | `cimd::a_client_whose_document_host_is_down_gets_503_never_401`, `cimd::a_slow_document_times_out_within_the_cap` |
//! | A flood of strangers' URL client ids (3,000, within the rate limits) pushing an approved metadata-document client's last good copy out of the shared cache, so its refresh during its host's outage gets 401 | `cimd::a_flood_of_url_client_ids_does_not_evict_an_approved_clients_document` (and `cimd::cache::tests::an_approved_clients_copy_outlives_the_shared_one_within_its_time_bound` in the crate) |
//! | A store outage read as "unauthorized" (clients would drop their tokens) | `bearer::a_store_outage_is_503_never_401` |
//! | PostgreSQL stopped mid-session (`pg_ctl stop -m immediate`): a 401 that makes clients drop their tokens, or a server that must be restarted | `instances::postgres::a_postgres_outage_is_503_everywhere_then_service_resumes` (and `stores`' `postgres::the_same_store_survives_a_postgres_outage`, `postgres::a_hung_postgres_fails_operations_within_the_timeout`; under load: `faults`' `postgres_outage::postgres_stopped_under_load_is_503_then_everything_issued_still_works`) |
//! | A NUL in a request's client id, which PostgreSQL refuses as a parameter: junk turned into a 503 "outage" | `instances::postgres::a_client_id_with_a_nul_is_unknown_not_an_outage` (and `stores`' `postgres::a_key_with_a_nul_is_absent_not_an_error`) |
//! | Instances racing on PostgreSQL: first starts migrating one new database at once, unapproved registrations past the cap | `stores`' `postgres::concurrent_first_starts_on_a_new_database_all_succeed`, `postgres::the_unapproved_cap_holds_across_pools` |
//! | Port-scanning through the metadata-document fetcher (a `client_id` naming port 8443, 22, 80, or a local port under the testing switch) | `cimd::client_ids_naming_a_port_other_than_443_are_refused_before_any_connection` (connections counted on a listener) |
//! | The metadata-document fetcher aimed at the server's own host | `cimd::the_servers_own_host_is_never_fetched` |
//! | Reading how a host answers from the public error text (refused vs timed out, status, content type, TLS error, JSON parse position) | `cimd::every_fetch_failure_says_only_its_category_and_the_doctor_keeps_the_detail` (and `oauth::client_metadata::tests::the_public_hears_a_category_and_the_detail_stays_with_the_owner` in the crate, for TLS) |
//! | `private_key_jwt`: a forged assertion (a foreign key under the client's `kid`, or embedded in the header as `jwk`/`jku`/`x5u`), `alg: none`, HS256 keyed with the client's public key, another algorithm than the registered one, wrong `aud`, `iss`/`sub`, expired, `exp` too far ahead, `nbf`/`iat` in the future, no `jti`, the wrong `client_assertion_type` | `private_key_jwt::every_bad_assertion_is_refused_naming_the_check`, `private_key_jwt::every_allowed_algorithm_verifies` (a key used with another family's algorithm); in the crate `oauth::assertion::verify::tests::each_claim_is_checked_and_named`, `oauth::assertion::keys::tests::hmac_and_none_are_never_allowed` |
//! | `private_key_jwt`: a replayed assertion, at the same instance, at another instance on shared SQLite or Redis, or many at once | `private_key_jwt::chatgpt_connects_refreshes_and_revokes_with_rs256_assertions`, `private_key_jwt::a_jti_is_single_use_across_instances_on_{memory,sqlite,redis}`, `private_key_jwt::concurrent_uses_of_one_assertion_have_one_winner_on_{memory,sqlite,redis}`, `private_key_jwt::the_servers_clock_judges_every_time_claim` |
//! | `private_key_jwt`: downgrade to `none` for a client that registered assertions alone; an assertion for a client registered with another method; an assertion beside a secret, Basic credentials or a disagreeing `client_id` | `private_key_jwt::chatgpt_connects_refreshes_and_revokes_with_rs256_assertions` (also at `/revoke`), `private_key_jwt::an_assertion_for_a_client_registered_with_another_method_is_refused`, `private_key_jwt::every_bad_assertion_is_refused_naming_the_check`, `review3::a_document_listing_only_private_key_jwt_must_sign` (a document with no preferred method listing `private_key_jwt` alone; in the crate `cimd::document::tests::a_listed_method_without_a_preferred_one_is_not_none`) |
//! | `private_key_jwt` for the pre-registered client: a forged or replayed assertion at `/introspect` or `/revoke`; an assertion when no keys are configured; private or symmetric keys configured | `client_keys::the_pre_registered_client_signs_at_token_introspect_and_revoke_or_sends_its_secret`, `client_keys::without_configured_keys_the_pre_registered_client_cannot_sign`, `client_keys::configured_keys_must_be_public_signing_keys` |
//! | `private_key_jwt`: guessing assertions without the failure budget | `private_key_jwt::assertion_failures_spend_the_clients_failure_budget`, `review3::a_burst_of_made_up_kids_from_one_address_is_held_to_the_budget` (made-up key ids sent at once: the budget's unit is held across each refetch) |
//! | `private_key_jwt` after a key rotation: concurrent first uses of the new key refused, or spending the client's own budget; a request abandoned during the refetch it caused | `review4::concurrent_first_uses_of_a_rotated_key_all_authenticate`, `review4::a_burst_of_first_uses_of_a_rotated_key_leaves_the_client_its_budget`, `review4::a_request_abandoned_during_a_refetch_it_caused_keeps_its_unit_spent`; in the crate `cimd::jwks::tests::a_burst_naming_one_unknown_kid_shares_one_refetch_and_another_kid_earns_its_own` |
//! | Key rotation under attack: abandoned refetches fetching past the budget, made-up kids on an uncacheable key set, a refetch failure kept for a client's real new kid (busy slots), a client's next kid named first spending the client's budget | `review5::abandoned_refetches_of_a_made_up_kid_fetch_the_key_host_past_the_budget`, `review5::concurrent_made_up_kids_fetch_an_uncacheable_key_set_at_most_the_budget`, `review5::busy_slots_at_the_first_naming_of_a_new_kid_do_not_fail_the_client_for_a_minute`, `review5::naming_a_clients_next_kid_first_does_not_lock_the_client_out`, `review5::a_first_use_abandoned_mid_refetch_leaves_the_next_one_authenticated`; in the crate `cimd::jwks::tests::a_refetch_that_failed_through_nobodys_fault_is_held_a_moment_not_kept` |
//! | Key host outages: a burst of one made-up kid from many addresses while the host is down fetching past the budget; an outage during a rotation spending the real client's budget | `review6::a_burst_of_one_made_up_kid_while_the_key_host_is_down_fetches_it_past_the_budget`, `review6::a_key_host_outage_during_a_rotation_does_not_lock_the_real_client_out`, `review6::a_large_burst_of_first_uses_of_a_rotated_key_is_never_429`, `review6::abandoned_shared_fetches_never_leave_a_removed_key_accepted`, `review6::dropped_machine_requests_never_take_a_live_tokens_place_or_token` |
//! | Keys after a rotation and across clients: a key replaced under its kid; a key parsed for one client naming another; a key the header carries or points at (`jwk`, `jku`, `x5u`) | `review7::a_key_replaced_under_its_kid_verifies_nothing_once_the_new_set_is_held`, `review7::a_key_parsed_for_one_client_never_verifies_anothers_assertion`, `review7::a_key_the_header_carries_or_points_at_is_never_used` |
//! | A key labelled with another curve (an EC key saying P-384 for ES256, an OKP key saying P-256 for EdDSA) | `review7::an_ec_key_labelled_p384_never_verifies_es256`, `review7::an_okp_key_labelled_p256_never_verifies_eddsa` |
//! | A header naming `b64` twice (false, then true) | `review7::a_header_naming_b64_twice_is_refused` |
//! | A header with `crit: null` or `b64: null`; a header naming a member the server does not read (`typ`, `jku`) twice | `review8::a_header_with_crit_or_b64_null_is_refused`, `review8::a_header_naming_another_member_twice_is_refused` |
//! | A removed key, through a refetch kept for its kid, once an invalid set has ended the set held | `review8::a_removed_key_stays_refused_once_an_invalid_set_ends_the_one_held` |
//! | A known key while a stranger's refetch holds the turn; a request dropped while holding the turn | `review8::a_known_key_verifies_while_a_strangers_refetch_holds_the_turn`, `review8::a_request_dropped_while_its_refetch_holds_the_turn_releases_it` |
//! | A key removed from the set, used through an earlier refetch kept for its kid | `review7::a_key_removed_from_the_set_stops_verifying_once_a_newer_set_is_held` |
//! | Bursts of made-up key ids, spaced past the outage hold, against a down key host | `review7::bursts_of_made_up_kids_spaced_by_the_hold_fetch_a_down_host_once_per_hold` |
//! | A set that publishes its private key, its key still used from the cache | `review7::a_set_seen_publishing_its_private_key_ends_the_cached_copy_of_that_key` |
//! | A machine's place kept by a request dropped while the place is written, or while a failed minting gives it back | `review5::a_request_dropped_during_the_place_write_gives_the_place_back`, `review5::a_request_dropped_while_giving_back_a_failed_mintings_place_gives_it_back` |
//! | A registered client's `jwks_uri` fetched where metadata documents are off | `review4::with_documents_off_a_registered_jwks_uri_is_neither_fetched_nor_accepted` |
//! | A machine's places leaked: a request dropped after taking one, a failed minting, revocations of its own tokens leaving markers that fill the store, revocations across a machine and another client | `review4::a_dropped_client_credentials_request_gives_its_place_back`, `review4::a_failed_minting_gives_the_machines_place_back`, `review4::a_machine_revoking_its_own_tokens_cannot_evict_the_owners_token`, `review4::a_revocation_across_a_machine_and_another_client_ends_nothing` |
//! | `private_key_jwt`: a flood of unknown `kid`s making the server fetch the JWKS in a loop (a rotated key is still accepted after one refetch) | `private_key_jwt::a_rotated_key_is_fetched_once_and_an_unknown_kid_earns_one_refetch_a_minute`, `private_key_jwt::an_uncacheable_key_set_is_fetched_at_most_once_per_request_and_never_past_the_budget`, `private_key_jwt::a_broken_jwks_uri_is_held_to_the_failure_budget` |
//! | `private_key_jwt`: a stranger spending the refetch a client's new key needs after a rotation | `private_key_jwt::nobody_can_spend_the_refetch_a_clients_new_key_needs` |
//! | `private_key_jwt`: a used `jti` evicted from the memory store by a flood of the attacker's own accepted assertions (also ground into one shard), then replayed | `private_key_jwt::a_flood_of_own_assertions_cannot_evict_a_used_jti`, `private_key_jwt::at_default_capacity_ground_jtis_cannot_evict_a_used_jti`; in the crate `backends::memory::tokens::tests::used_assertion_markers_are_never_evicted_and_a_table_full_of_them_refuses` |
//! | `private_key_jwt`: crafted assertions (duplicate claims, `crit`, `b64: false`, `aud` variants, odd numbers, extra segments, JWS JSON) | `private_key_jwt::crafted_assertions_are_refused` |
//! | `private_key_jwt`: key sets with private members or symmetric keys (inline or at `jwks_uri`), an oversize JWKS, a `jwks_uri` on a private address, a document declaring `private_key_jwt` without keys; a stalling or failing JWKS host read as "unknown client" (401) | `private_key_jwt::documents_declaring_private_key_jwt_without_usable_keys_are_refused_at_authorize`, `private_key_jwt::a_key_set_the_client_broke_is_401_and_one_that_cannot_be_fetched_is_503`; in the crate `oauth::assertion::keys::tests::private_or_symmetric_keys_refuse_the_set`, `cimd::document::tests::private_key_jwt_alone_must_sign_with_the_keys_it_publishes` |
//! | `client_credentials` by a client the configuration does not name as a machine: the pre-registered client, a registered client (public or with its secret), a metadata-document client | `machine_clients::clients_not_configured_as_machines_are_unauthorized_client`, `machine_clients::a_metadata_document_client_is_unauthorized_client` |
//! | A machine client guessing its secret, forging its assertion (a foreign key under its `kid`), or downgrading from keys-only to a secret; then 429 even for the right secret | `machine_clients::wrong_credentials_are_invalid_client_and_spend_the_budget` |
//! | A machine client asking beyond its scopes (one of the server's it was not given, an unknown one) or for another resource | `machine_clients::scope_beyond_the_machines_list_is_invalid_scope_and_a_foreign_resource_invalid_target` |
//! | A machine client reaching for the owner's grants: a consent page, a refresh, a refresh token to keep | `machine_clients::a_machine_client_cannot_use_the_owners_grants`, `machine_clients::a_machine_client_gets_a_token_with_its_secret_or_an_assertion_and_no_refresh_token` |
//! | A machine's token taken by an MCP handler for the owner's approval; a machine dropped from the configuration still using its tokens | `machine_clients::a_machine_client_gets_a_token_with_its_secret_or_an_assertion_and_no_refresh_token`, `machine_clients::an_owners_token_is_marked_as_approved_by_the_owner`, `machine_clients::a_machine_the_configuration_no_longer_names_loses_its_tokens`; shared and revoked across instances on every backend: `machine_clients::machine_tokens_are_shared_and_revoked_across_instances_on_{memory,sqlite,redis}` |
//! | A resource server introspecting a removed machine's token (active while the guard refuses it), or unable to tell a machine's token from an owner-approved one | `review_machine_clients::introspection_reports_a_removed_machines_token_inactive`, `review_machine_clients::introspection_marks_a_machines_token_with_its_client_as_sub` |
//! | A machine's token outliving the configuration it was minted under: the machine removed and added back with a new secret, its secret or key set rotated, its scopes narrowed (on memory, SQLite and Redis) | `review_machine_clients::a_removed_machine_added_back_with_a_new_secret_does_not_revive_its_old_tokens`, `review_machine_clients::rotating_a_machines_secret_ends_the_tokens_minted_with_the_old_one`, `review_machine_clients::narrowing_a_machines_scopes_narrows_its_live_tokens`, `review_machine_clients::a_machines_token_ends_with_its_key_set_or_its_last_scope_and_introspects_narrowed`, `review_machine_clients::a_removed_machines_token_is_refused_and_stays_refused_when_added_back_on_sqlite`, `review_machine_clients::a_removed_machines_token_is_refused_and_stays_refused_when_added_back_on_redis` |
//! | The owner deleting a machine's leftover entry on an instance whose configuration does not name it: the deletion marker locking the machine out where it is named | `review_machine_clients::a_deletion_where_the_machine_is_not_configured_revokes_its_tokens_without_locking_it_out` |
//! | A machine (or a thief of its credentials) flooding `client_credentials` to fill the memory store: evicting the owner's access token or the consumed refresh markers that detect reuse, or pushing live machine tokens out of the console; the cap raced from two instances | `review_machine_clients::a_machines_token_flood_is_capped_and_leaves_the_owners_access_token_in_the_memory_store`, `review_machine_clients::a_machines_token_flood_is_capped_and_leaves_refresh_reuse_detection_working`, `review_machine_clients::after_a_machines_flood_every_live_machine_token_is_in_the_console`, `review_machine_clients::a_machines_live_tokens_stay_within_its_cap_across_racing_instances_and_revoking_frees_one`, `review_machine_clients::a_machines_live_tokens_stay_within_its_cap_across_racing_instances_on_sqlite`, `review_machine_clients::a_machines_live_tokens_stay_within_its_cap_across_racing_instances_on_redis`, `review3::one_machine_at_the_largest_allowed_cap_cannot_evict_the_owners_token_from_readmes_store` (a cap too large for the memory store's room refused at build) |
//! | A machine's places held after its tokens ended: revoked by the machine itself at `/revoke` (place and console row kept), ended by a rotation of its credentials (a thief's tokens locking the rotated machine out), or above a lowered cap (tokens left live beyond it) | `review3::a_machine_that_revokes_its_own_tokens_gets_new_ones`, `review3::the_console_does_not_list_a_token_the_machine_revoked`, `review3::rotating_a_leaked_machine_secret_gives_the_machine_its_places_back`, `review3::lowering_a_machines_cap_across_a_restart_leaves_it_within_the_new_cap` |
//! | Private or symmetric keys configured for a machine client; a machine client deleted in the console (its deletion marker would refuse its later tokens) | `machine_clients::a_machine_clients_keys_must_be_public_and_usable`, `machine_clients::the_owner_sees_machine_clients_with_their_live_tokens_and_revokes_them` |
//! | A configured client's `jwks_uri` (pre-registered or machine) over `http` off loopback, on a private address, this machine or a port not allowed, or beside inline keys | `configured_key_uris::every_bad_jwks_uri_is_a_configuration_error_naming_the_field`, `config::client_keys::tests::keys_inline_and_at_a_url_at_once_are_refused` (in the crate) |
//! | A configured client's key host down, failing or stalling, read as "unauthorized"; a configured client's rotation at its `jwks_uri` refused or fetched in a loop | `configured_key_uris::a_key_host_that_fails_or_stalls_is_503_not_401`, `configured_key_uris::a_machine_with_a_jwks_uri_signs_and_a_rotation_at_the_url_costs_one_refetch` |
//! | The pre-registered client configured with keys and no secret authenticated by a secret (the empty one included) or by nothing; an empty secret without keys | `configured_key_uris::the_pre_registered_client_with_keys_and_no_secret_signs_every_request`, `config::client_keys::tests::no_secret_is_allowed_only_beside_keys` (in the crate) |
//! | A machine's tokens outliving a move of its keys to another `jwks_uri` (on an instance sharing the store) | `configured_key_uris::changing_a_machines_jwks_uri_ends_its_tokens_and_a_rotation_at_it_does_not`, `oauth::machine::tests::the_key_url_is_part_of_the_fingerprint_only_when_set` (in the crate) |
//! | A dynamically registered `private_key_jwt` client downgraded: no assertion, a guessed secret (form or Basic), a foreign key under its `kid`, HS256 keyed with its public key, another algorithm than registered, a replayed `jti`, `client_credentials`, introspection | `registered_private_key_jwt::a_registered_signing_client_gets_in_by_its_assertion_only`, `registered_private_key_jwt::a_client_registered_with_inline_keys_connects_refreshes_and_revokes_by_assertion` (no assertion at `/token`, refresh and `/revoke`) |
//! | Registering `private_key_jwt` with keys no one should trust or no keys: private members, `kty: oct`, more than 16 keys, over 16 KiB kept, no usable key, both `jwks` and `jwks_uri` or neither, `alg` none or HS256, a `jwks_uri` over http, on loopback without the testing switch, on a private address or another port, or where this server fetches no metadata documents | `registered_private_key_jwt::registration_refuses_bad_private_key_jwt_metadata_saying_why`, `registered_private_key_jwt::without_metadata_documents_a_jwks_uri_is_refused_and_inline_keys_still_register` |
//! | A stranger's registrations made as large as inline keys allow (the largest record, 16 KiB of keys, is under 25 KiB of JSON), past the cap on unapproved clients or the memory store's byte budget | `registered_private_key_jwt::signing_registrations_are_held_to_the_cap_on_unapproved_clients`; in the crate `oauth::tests::register::the_largest_registration_with_keys_is_a_bounded_record`; `tests/stores/memory.rs`: `byte_budget::registered_keys_count_toward_the_byte_budget` |
//! | A registered signing client's keys lost on restart or not seen by another instance (it could no longer sign in, or a backend dropping the keys) | `registered_private_key_jwt::a_registered_signing_client_survives_a_restart_on_sqlite`, `registered_private_key_jwt::a_registered_signing_client_is_shared_by_instances_on_redis`; store contract `conformance::client_round_trip` (every backend); in the crate `store::client::tests::a_record_written_before_private_key_jwt_still_reads_and_writes_back_the_same` |

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use mcp_oauth::webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};
use mcp_oauth::{McpOAuth, MemoryStore};
use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;

use crate::bearer::DownStore;
use crate::common::*;

/// A value smuggling new headers in, were it ever copied into one.
const HEADER_INJECTION: &str = "st\r\nSet-Cookie: pwned=1\r\nLocation: https://evil.example/";

/// Markup that runs script if a page copies it without escaping, in an element or an attribute;
/// without whitespace, so that it is a registrable redirect URI query too.
fn xss(n: u32) -> String {
    format!("x\"'><img/src=x/onerror=alert({n})><script>alert({n})</script>")
}

#[track_caller]
fn assert_no_markup_injected(page: &str, what: &str) {
    assert!(!page.contains("<script>alert"), "{what}: {page}");
    assert!(!page.contains("<img/src=x"), "{what}: {page}");
    // Quotes escaped too, so no attribute is broken out of.
    assert!(!page.contains("x\"'>"), "{what}: {page}");
}

#[track_caller]
fn assert_unframeable(reply: &Reply, what: &str) {
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{what} is a page: {:?}",
        reply.header("content-type")
    );
    assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{what}");
    let csp = reply.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
}

#[track_caller]
fn assert_no_injected_header(reply: &Reply) {
    assert!(reply.header("location").is_none());
    for (name, value) in &reply.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(
            !value.contains("pwned") && !value.contains("evil.example"),
            "{name}: {value}"
        );
    }
}

/// A fresh approval challenge for a pending request.
async fn challenge_for(server: &TestServer, request_id: &str) -> Value {
    let reply = server
        .post_json("/authorize/challenge", &json!({ "request_id": request_id }))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

async fn approve_with(
    server: &TestServer,
    request_id: &str,
    challenge: &Value,
    credential: &Value,
) -> Reply {
    server
        .post_json(
            "/authorize/approve",
            &json!({ "request_id": request_id, "ceremony_id": challenge["ceremony_id"], "credential": credential }),
        )
        .await
}

/// The owner's key signing `challenge` as if the page were served from `origin`.
async fn assertion_from(server: &TestServer, origin: &str, challenge: &Value) -> Value {
    let options: RequestChallengeResponse =
        serde_json::from_value(challenge["options"].clone()).unwrap();
    let credential = server
        .key
        .lock()
        .await
        .do_authentication(Url::parse(origin).unwrap(), options)
        .expect("the authenticator signs for any origin under the RP id");
    serde_json::to_value(credential).unwrap()
}

#[tokio::test]
async fn script_scheme_redirects_are_refused_at_registration_and_authorize() {
    let server = TestServer::ready().await;
    let schemes = [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "javascript://claude.ai/%0Aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "DATA:text/html,x",
        "vbscript:msgbox(1)",
        "\tjavascript:alert(1)",
        "java\nscript:alert(1)",
    ];
    for evil in schemes {
        let reply = server
            .post_json(
                "/register",
                &json!({ "redirect_uris": [evil], "token_endpoint_auth_method": "none" }),
            )
            .await;
        reply.assert_oauth_error(400, "invalid_redirect_uri");
    }
    // At authorize, against a client registered with a safe URI: an error page, no link to follow.
    let client_id = server.register_public_client().await;
    let (_, challenge) = pkce();
    for evil in schemes {
        let reply = server
            .get(&format!(
                "/authorize?{}",
                authorization_query(&client_id, evil, &challenge)
            ))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{evil}");
        assert!(reply.header("location").is_none());
        let page = reply.text().to_ascii_lowercase();
        assert!(
            !["href=\"javascript", "href=\"data:text", "href=\"vbscript"]
                .iter()
                .any(|link| page.contains(link)),
            "{evil}: {page}"
        );
        assert!(!page.contains("data-request-id"), "{evil}");
    }
}

#[tokio::test]
async fn state_cannot_inject_headers_and_stays_encoded_in_the_redirect() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let (_, challenge) = pkce();
    let query = authorization_query(&client_id, LOOPBACK_REDIRECT, &challenge)
        .replace("state=st", &format!("state={}", enc(HEADER_INJECTION)));
    assert!(query.contains("%0D%0ASet-Cookie"));

    // The consent page: no header carries the state.
    let page = server.get(&format!("/authorize?{query}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert_no_injected_header(&page);

    // Approval: the redirect is JSON the page navigates to, and the state in it stays encoded.
    let request_id = server.authorize(&query).await.unwrap();
    let challenge = challenge_for(&server, &request_id).await;
    let credential = server.assert_with(&server.key, &challenge).await;
    let approved = approve_with(&server, &request_id, &challenge, &credential).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text());
    assert_no_injected_header(&approved);
    let redirect_to = approved.json()["redirect_to"].as_str().unwrap().to_owned();
    assert!(!redirect_to.contains(['\r', '\n', ' ']), "{redirect_to:?}");
    assert!(redirect_to.contains("%0D%0ASet-Cookie"), "{redirect_to}");
    let url = Url::parse(&redirect_to).unwrap();
    assert_eq!(url.host_str(), Some("127.0.0.1"));
    assert_eq!(
        query_param(&url, "state").as_deref(),
        Some(HEADER_INJECTION),
        "the client gets its state back intact"
    );

    // Denial: the same.
    let request_id = server.authorize(&query).await.unwrap();
    let denied = server
        .post_json("/authorize/deny", &json!({ "request_id": request_id }))
        .await;
    assert_no_injected_header(&denied);
    let redirect_to = denied.json()["redirect_to"].as_str().unwrap().to_owned();
    assert!(!redirect_to.contains(['\r', '\n', ' ']), "{redirect_to:?}");

    // An invalid request for a valid client: the error page's link carries the state, encoded.
    let invalid = query.replace("response_type=code", "response_type=token");
    let page = server.get(&format!("/authorize?{invalid}")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert_no_injected_header(&page);
    let text = page.text();
    assert!(text.contains("%0D%0ASet-Cookie"), "{text}");
    assert!(!text.contains("\r\nSet-Cookie") && !text.contains("\nSet-Cookie"));
}

#[tokio::test]
async fn an_assertion_made_for_another_origin_is_refused() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let request_id = server.pending_request(&client_id, LOOPBACK_REDIRECT).await;
    // Same RP id, other origins: another port, a subdomain. A phishing page on either gets the
    // owner's authenticator to sign, but the signed client data names that page's origin.
    for origin in ["http://localhost:9999", "https://evil.localhost"] {
        let challenge = challenge_for(&server, &request_id).await;
        let credential = assertion_from(&server, origin, &challenge).await;
        let reply = approve_with(&server, &request_id, &challenge, &credential).await;
        assert!(reply.status.is_client_error(), "{origin}: {}", reply.text());
        assert!(reply.json().get("redirect_to").is_none(), "{origin}");
    }
    // Sign-in to the console from another origin fails the same way.
    let challenge = server
        .post_json("/oauth/console/signin/start", &json!({}))
        .await
        .json();
    let credential = assertion_from(&server, "http://localhost:9999", &challenge).await;
    let reply = server
        .post_json(
            "/oauth/console/signin/finish",
            &json!({ "ceremony_id": challenge["ceremony_id"], "credential": credential }),
        )
        .await;
    assert!(reply.status.is_client_error(), "{}", reply.text());
    assert!(reply.header("set-cookie").is_none());
}

#[tokio::test]
async fn a_passkey_made_for_another_origin_is_not_registered() {
    let server = TestServer::new().await;
    let start = server
        .post_json(
            "/passkey/register/start",
            &json!({ "setup_token": SETUP_TOKEN, "label": "phished" }),
        )
        .await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.text());
    let start = start.json();
    let options: CreationChallengeResponse =
        serde_json::from_value(start["options"].clone()).unwrap();
    let credential = server
        .key
        .lock()
        .await
        .do_registration(Url::parse("http://localhost:9999").unwrap(), options)
        .unwrap();
    let reply = server
        .post_json(
            "/passkey/register/finish",
            &json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
        )
        .await;
    assert!(reply.status.is_client_error(), "{}", reply.text());
    assert!(server.stores.passkeys.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_replayed_assertion_is_refused_under_any_ceremony() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let first = server.pending_request(&client_id, LOOPBACK_REDIRECT).await;
    let first_challenge = challenge_for(&server, &first).await;
    let captured = server.assert_with(&server.key, &first_challenge).await;
    let ok = approve_with(&server, &first, &first_challenge, &captured).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());

    // The captured assertion, replayed for another request: under the spent ceremony, and under a
    // fresh one whose challenge it did not sign.
    let second = server.pending_request(&client_id, LOOPBACK_REDIRECT).await;
    let spent = approve_with(&server, &second, &first_challenge, &captured).await;
    spent.assert_oauth_error(400, "invalid_request");
    let fresh = challenge_for(&server, &second).await;
    let replayed = approve_with(&server, &second, &fresh, &captured).await;
    assert!(replayed.status.is_client_error(), "{}", replayed.text());
    assert!(replayed.json().get("redirect_to").is_none());
    // Nor can it open a console session.
    let sign_in = server
        .post_json("/oauth/console/signin/start", &json!({}))
        .await
        .json();
    let reply = server
        .post_json(
            "/oauth/console/signin/finish",
            &json!({ "ceremony_id": sign_in["ceremony_id"], "credential": captured }),
        )
        .await;
    assert!(reply.status.is_client_error(), "{}", reply.text());
    assert!(reply.header("set-cookie").is_none());
}

#[tokio::test]
async fn a_confidential_client_cannot_redeem_another_clients_code() {
    let server = TestServer::ready().await;
    let victim = server.register_public_client().await;
    let attacker = server
        .register_client(json!({
            "redirect_uris": [LOOPBACK_REDIRECT],
            "token_endpoint_auth_method": "client_secret_post",
        }))
        .await;
    let (code, verifier) = server.code_for(&victim, LOOPBACK_REDIRECT).await;
    // The attacker authenticates correctly and holds the stolen code and verifier.
    let stolen = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("client_id", attacker["client_id"].as_str().unwrap()),
                ("client_secret", attacker["client_secret"].as_str().unwrap()),
                ("redirect_uri", LOOPBACK_REDIRECT),
                ("resource", RESOURCE),
            ]),
            &[],
        )
        .await;
    stolen.assert_oauth_error(400, "invalid_grant");
    // The victim's code is intact.
    let mine = server
        .exchange(&victim, &code, &verifier, LOOPBACK_REDIRECT)
        .await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text());
}

#[tokio::test]
async fn client_supplied_fields_are_escaped_on_every_page() {
    let server = TestServer::ready().await;
    let redirect = format!("https://app.example.com/cb?q={}", xss(3));
    let client_id = server
        .client_id_for(json!({
            "redirect_uris": [redirect],
            "token_endpoint_auth_method": "none",
            "client_name": xss(1),
            "client_uri": format!("https://app.example.com/{}", xss(2)),
        }))
        .await;
    let (_, challenge) = pkce();
    let query = format!(
        "{}&scope={}",
        authorization_query(&client_id, &redirect, &challenge)
            .replace("state=st", &format!("state={}", enc(&xss(5)))),
        enc(&xss(4))
    );
    let consent = server.get(&format!("/authorize?{query}")).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.text());
    assert_no_markup_injected(&consent.text(), "consent page");
    assert!(
        consent.text().contains("&#60;script&#62;alert(1)"),
        "the name is shown, escaped"
    );

    // The error page's return link carries the redirect URI and the state.
    let invalid = query.replace("response_type=code", "response_type=token");
    let error = server.get(&format!("/authorize?{invalid}")).await;
    assert_eq!(error.status, StatusCode::BAD_REQUEST);
    assert_no_markup_injected(&error.text(), "error page");
    assert!(error.text().contains("error=unsupported_response_type"));

    // The console lists the client with its name and redirect URI.
    let request_id = server.authorize(&query).await.unwrap();
    server.approve(&request_id).await;
    let session = crate::console::sign_in(&server).await;
    let console = crate::console::console_page(&server, Some(&session.cookie)).await;
    assert!(console.contains(&client_id), "the client is listed");
    assert_no_markup_injected(&console, "console");
}

#[tokio::test]
async fn every_html_page_refuses_to_be_framed() {
    let mut config = config();
    config.rate_limits.auth = mcp_oauth::RateLimit::new(1, 30);
    let server = TestServer::with_config(config).await;
    assert_unframeable(&server.get("/passkey/register").await, "registration page");
    assert_unframeable(&server.get("/oauth/console").await, "console sign-in");
    server.register_passkey(SETUP_TOKEN).await;
    let client_id = server.register_public_client().await;
    let (_, challenge) = pkce();
    let query = authorization_query(&client_id, LOOPBACK_REDIRECT, &challenge);
    assert_unframeable(&server.get(&format!("/authorize?{query}")).await, "consent");
    assert_unframeable(
        &server
            .get(&format!(
                "/authorize?{}",
                query.replace("response_type=code", "response_type=token")
            ))
            .await,
        "error page with a return link",
    );
    assert_unframeable(
        &server.get("/authorize?client_id=nobody").await,
        "error page",
    );
    let session = crate::console::sign_in(&server).await;
    let console = server
        .send(
            Request::get("/oauth/console")
                .header(header::COOKIE, &session.cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(console.text().contains("data-csrf"), "signed in");
    assert_unframeable(&console, "console");

    // A flood's 429 page.
    let mut limited = None;
    for _ in 0..40 {
        let reply = server.get("/authorize").await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(reply);
            break;
        }
    }
    assert_unframeable(&limited.expect("the limit is reached"), "429 page");

    // An outage's 503 page.
    let down = McpOAuth::builder(crate::common::config())
        .stores(MemoryStore::new())
        .token_store(Arc::new(DownStore))
        .build()
        .unwrap();
    let down = TestServer::serving(down, Stores::memory(), mcp_routes());
    let reply = down
        .get(&format!(
            "/authorize?{}",
            authorization_query(CLIENT_ID, CLAUDE_REDIRECT, &challenge)
        ))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    assert_unframeable(&reply, "503 page");
}

#[tokio::test]
async fn a_registration_flood_is_refused_at_the_store_capacity_until_the_owner_clears_it() {
    const CAPACITY: u64 = 50;
    let mut config = config();
    // Addresses are cheap for an attacker with a botnet: the store's bound is the last line.
    config.rate_limits.enabled = false;
    let stores = Stores::of(MemoryStore::with_capacity(1_000, CAPACITY));
    let server = TestServer::on(stores.clone(), config, mcp_routes());
    server.register_passkey(SETUP_TOKEN).await;
    let mut admitted = 0;
    for n in 0..(CAPACITY * 8) {
        let reply = server
            .post_json(
                "/register",
                &json!({
                    "redirect_uris": [LOOPBACK_REDIRECT],
                    "token_endpoint_auth_method": "none",
                    "client_name": format!("flood {n} {}", "x".repeat(100)),
                }),
            )
            .await;
        match reply.status {
            StatusCode::CREATED => admitted += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                reply.assert_oauth_error(503, "temporarily_unavailable");
            }
            other => panic!("registration {n}: {other} {}", reply.text()),
        }
    }
    assert_eq!(
        admitted, CAPACITY,
        "the store admits its capacity, then refuses"
    );
    let held = stores.clients.list().await.unwrap().len() as u64;
    assert!(held <= CAPACITY, "{held} clients held, capacity {CAPACITY}");
    // The configured client still connects.
    let (_, challenge) = pkce();
    assert!(
        server
            .authorize(&authorization_query(CLIENT_ID, CLAUDE_REDIRECT, &challenge))
            .await
            .is_ok()
    );
    // The owner clears the flood; registrations are admitted and connect again.
    assert_eq!(
        server
            .oauth
            .admin()
            .remove_unapproved_clients()
            .await
            .unwrap() as u64,
        CAPACITY
    );
    let (client_id, _) = server.connected_client().await;
    assert!(!client_id.is_empty());
}
