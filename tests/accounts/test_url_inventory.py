"""Every URL the platform serves must be in the access matrix below, with the test that shows a person of
another company or building gets nothing there. A new URL without an entry fails this test."""

from django.urls import URLPattern, URLResolver, get_resolver

# route -> where its access is tested (file::test)
PUBLIC_ROUTES = {
    "accounts/login/": "test_access.py::test_anonymous_is_sent_to_login, test_login_with_email_and_password",
    "accounts/logout/": "test_access.py::test_login_with_email_and_password",
    "accounts/profile/": "test_profile.py::test_people_of_other_buildings_get_nothing_and_strangers_log_in_first",
    "accounts/password-reset/": "test_access.py::test_password_reset_by_email",
    "accounts/password-reset/sent/": "test_access.py::test_password_reset_by_email",
    "accounts/reset/<uidb64>/<token>/": "test_access.py::test_password_reset_by_email",
    "accounts/reset/done/": "test_access.py::test_password_reset_by_email",
    "accounts/invitation/<uidb64>/<token>/": (
        "test_invitations.py::test_commissioning_invites_new_people_who_choose_a_password_and_log_in, "
        "test_a_link_is_for_its_own_person_only"
    ),
    "": "test_access.py::test_manager_of_another_company_gets_nothing_of_acme",
    "go/<slug:slug>/": "test_access.py::test_a_ticket_works_only_for_its_building_and_its_person",
    "portfolio/": (
        "console/test_portfolio.py::test_each_manager_sees_the_buildings_of_their_companies_only, "
        "test_board_members_and_residents_get_nothing"
    ),
    "healthz": "test_access.py::test_healthz (no data)",
    "admin/": "test_access.py::test_admin_site_is_for_platform_staff_only",
    "api/ocpp/chargers/<str:charge_point_id>/commands/<str:action>": (
        "test_access.py::test_charger_commands_only_for_the_companys_managers, "
        "ocpp/test_two_processes.py::test_command_from_process_two_reaches_charger_on_process_one"
    ),
    # No login: Stripe's signature on the raw body is the access check; nothing is shown, and a building's
    # data is only ever changed from objects re-fetched from Stripe.
    "payments/stripe/webhook": (
        "payments/test_webhooks.py::test_a_forged_webhook_gets_400_and_changes_nothing, "
        "test_another_building_gets_nothing_from_an_intent_that_names_it, "
        "test_the_webhook_address_exists_on_the_company_site_only"
    ),
}
TENANT_ROUTES = {
    "accounts/login/": "test_access.py::test_login_with_email_and_password",
    "accounts/logout/": "test_access.py::test_login_with_email_and_password",
    "accounts/profile/": "test_profile.py::test_people_of_other_buildings_get_nothing_and_strangers_log_in_first",
    "accounts/password-reset/": "test_access.py::test_password_reset_by_email",
    "accounts/password-reset/sent/": "test_access.py::test_password_reset_by_email",
    "accounts/reset/<uidb64>/<token>/": "test_access.py::test_password_reset_by_email",
    "accounts/reset/done/": "test_access.py::test_password_reset_by_email",
    "accounts/invitation/<uidb64>/<token>/": (
        "test_invitations.py::test_commissioning_invites_new_people_who_choose_a_password_and_log_in, "
        "test_a_link_is_for_its_own_person_only"
    ),
    "": "test_access.py::test_resident_sees_own_unit_and_cards_only, test_manager_of_another_company_gets_nothing_of_acme",
    "accounts/handoff/": "test_access.py::test_a_ticket_works_only_for_its_building_and_its_person",
    "healthz": "test_access.py::test_healthz (no data)",
    "api/v1/sessions/<int:session_pk>/needs": (
        "charging/test_session_needs.py::test_nobody_else_sees_or_changes_a_residents_needs, "
        "test_a_put_without_the_csrf_token_is_refused"
    ),
    "api/v1/connectors/<str:charge_point_id>/<int:connector_id>/quote": (
        "billing/test_quote.py::test_the_buildings_people_get_a_quote_and_outsiders_nothing"
    ),
    "ocpp/frames.csv": (
        "ocpp/test_export.py::test_only_the_buildings_managers_and_board_get_the_frame_log, "
        "test_managers_see_card_ids_board_members_see_them_masked_and_outsiders_nothing"
    ),
    "console/": (
        "console/test_page.py::test_residents_and_people_of_other_buildings_get_nothing, "
        "test_the_other_companys_manager_sees_only_their_own_building; the live view's socket: "
        "console/test_live.py::test_everyone_else_is_refused_at_the_handshake"
    ),
    "api/v1/chargers/": "api/test_api.py::test_people_of_other_buildings_get_nothing, test_fuzz.py",
    "api/v1/sessions/": "api/test_api.py::test_people_of_other_buildings_get_nothing, test_fuzz.py",
    "api/v1/statements/": "api/test_api.py::test_people_of_other_buildings_get_nothing, test_fuzz.py",
    "api/v1/tariffs/": "api/test_api.py::test_people_of_other_buildings_get_nothing, test_fuzz.py",
    "api/v1/site-meter-readings/": "api/test_api.py::test_people_of_other_buildings_get_nothing, test_fuzz.py",
    "api/schema/": "api/test_api.py::test_the_openapi_description_and_its_docs_are_served_by_the_platform (public)",
    "api/docs/": "api/test_api.py::test_the_openapi_description_and_its_docs_are_served_by_the_platform (public)",
    "alerts/": "console/test_alerts.py::test_residents_and_people_of_other_buildings_get_nothing",
    "alerts/<int:alert_pk>/acknowledge": (
        "console/test_alerts.py::test_residents_and_people_of_other_buildings_get_nothing"
    ),
    "alerts/<int:alert_pk>/resolve": "console/test_alerts.py::test_residents_and_people_of_other_buildings_get_nothing",
    "alerts/preferences": "console/test_alerts.py::test_residents_and_people_of_other_buildings_get_nothing",
    "console/chart.json": "console/test_history.py::test_residents_and_people_of_other_buildings_get_no_chart",
    "console/operate/<str:charge_point_id>/<int:connector>/": (
        "console/test_operations.py::test_nobody_else_can_send_one"
    ),
    "console/operate/<str:charge_point_id>/<int:connector>/<slug:key>/": (
        "console/test_operations.py::test_nobody_else_can_send_one, "
        "test_stopping_with_no_session_under_way_sends_nothing (another building's charger: 404)"
    ),
    "console/operations/": "console/test_operations.py::test_nobody_else_can_send_one",
    "me/": (
        "portal/test_resident.py::test_a_resident_downloads_their_statement_and_nobody_else_does; the live view's "
        "socket: portal/test_resident.py::test_nobody_but_a_resident_of_the_building_gets_the_live_view"
    ),
    "me/charge/<str:charge_point_id>/<int:connector>/": (
        "portal/test_resident.py::test_a_resident_cannot_start_on_another_households_spot_or_stop_their_session"
    ),
    "me/sessions/<int:session_pk>/stop/": (
        "portal/test_resident.py::test_a_resident_cannot_start_on_another_households_spot_or_stop_their_session"
    ),
    "me/autopay/<int:resident_pk>/": "portal/test_autopay.py::test_nobody_else_changes_a_households_autopay",
    "me/cards/<str:id_tag>/lost/": "portal/test_resident.py::test_a_card_reported_lost_is_refused_at_once",
    "me/statements/<int:statement_pk>.pdf": (
        "portal/test_resident.py::test_a_resident_downloads_their_statement_and_nobody_else_does"
    ),
    "capacity/": (
        "electrical/test_capacity_report.py::test_residents_and_other_buildings_get_nothing, "
        "test_the_page_with_its_charts_for_managers_and_board"
    ),
    "api/v1/site-meters/<str:meter_key>/readings": (
        "electrical/test_push.py::test_wrong_missing_or_foreign_tokens_and_unknown_ids_all_get_the_same_401, "
        "test_token_failures_are_rate_limited_per_meter_and_per_address"
    ),
    "audit/<str:name>": (
        "audit/test_export.py::test_managers_get_card_ids_board_members_masked_and_outsiders_nothing"
    ),
    "payments/account": "payments/test_access.py::test_a_resident_sees_their_own_account_and_nobody_else_does",
    "payments/pay-balance": "payments/test_access.py::test_a_resident_pays_their_balance_and_saves_a_card",
    "payments/cards/setup": "payments/test_access.py::test_a_resident_pays_their_balance_and_saves_a_card",
    "payments/cards/save": "payments/test_access.py::test_a_resident_pays_their_balance_and_saves_a_card",
    "payments/<int:payment_id>/refunds": "payments/test_access.py::test_only_the_company_s_managers_refund_and_adjust",
    "payments/residents/<int:resident_id>/adjustments": (
        "payments/test_access.py::test_only_the_company_s_managers_refund_and_adjust"
    ),
    "reconciliation/": (
        "reconciliation/test_pages.py::test_board_and_managers_see_the_report_and_the_payback, "
        "test_outsiders_and_residents_get_nothing_of_the_report, "
        "test_managers_enter_and_approve_the_board_only_reads_outsiders_get_nothing"
    ),
    "reconciliation/bills/<int:bill_id>/": (
        "reconciliation/test_pages.py::test_board_and_managers_see_the_report_and_the_payback, "
        "test_outsiders_and_residents_get_nothing_of_the_report, "
        "test_managers_enter_and_approve_the_board_only_reads_outsiders_get_nothing"
    ),
    "reconciliation/investment/": (
        "reconciliation/test_pages.py::test_board_and_managers_see_the_report_and_the_payback, "
        "test_outsiders_and_residents_get_nothing_of_the_report"
    ),
    "residents/<int:resident_id>/summary": (
        "reconciliation/test_pages.py::test_a_resident_sees_their_own_year_and_nobody_else_does"
    ),
    # No login: a connector's public code opens its page on its own building's host only; a visit's secret
    # token is the only key to it (another visit's token, or another connector's code, gets 404).
    "v/<slug:code>": "visitors/test_access.py::test_a_visit_is_seen_and_stopped_with_its_own_token_only",
    "v/<slug:code>/quote": "visitors/test_access.py::test_a_visit_is_seen_and_stopped_with_its_own_token_only",
    "v/<slug:code>/visits": "visitors/test_access.py::test_the_form_refuses_bad_input_with_the_reason",
    "v/<slug:code>/visits/<str:token>": (
        "visitors/test_access.py::test_a_visit_is_seen_and_stopped_with_its_own_token_only"
    ),
    "v/<slug:code>/visits/<str:token>/start": (
        "visitors/test_access.py::test_a_visit_is_seen_and_stopped_with_its_own_token_only"
    ),
    "v/<slug:code>/visits/<str:token>/stop": (
        "visitors/test_access.py::test_a_visit_is_seen_and_stopped_with_its_own_token_only"
    ),
    "visitors/labels.pdf": "visitors/test_access.py::test_only_the_company_s_managers_download_the_labels",
    "visitors/visits": "visitors/test_flow.py::test_a_price_above_the_hold_captures_the_hold_and_records_the_shortfall",
}


def routes(urlconf: str) -> set[str]:
    found: set[str] = set()

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                if route == "admin/":  # Django's admin guards itself; its entry covers it
                    found.add(route)
                    continue
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                found.add(route)

    walk(get_resolver(urlconf).url_patterns, "")
    return found


def test_every_public_url_has_an_access_test():
    assert routes("hoa_charging.urls_public") == set(PUBLIC_ROUTES)


def test_every_building_url_has_an_access_test():
    assert routes("hoa_charging.urls_tenants") == set(TENANT_ROUTES)
