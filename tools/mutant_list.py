"""The bugs ``tools/mutants.py`` plants: one exact snippet of one file each, and the tests that
must catch it. Realistic slips in the safety-critical code (the journal's Lua, reconcile,
read-back, the limiter, the planner, validation, sinks, trust boundaries), not syntax errors.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str


JOBS = "tests/jobs"
M = Mutant

MUTANTS: list[Mutant] = [
    # -- the job journal (jobs/_lua.py, jobs/reconcile.py, jobs/store.py) ---------------------
    M(
        "intent_live_lease_only",
        "postman_async/jobs/_lua.py",
        "if e ~= tonumber(ARGV[2]) or u <= now then return -1 end\n"
        "if redis.call('HEXISTS', c .. ':res', ARGV[3]) == 1 then return -2 end",
        "if not e or u <= now then return -1 end\n"
        "if redis.call('HEXISTS', c .. ':res', ARGV[3]) == 1 then return -2 end",
        (
            f"{JOBS}/test_job_crashes.py::test_a_stale_worker_resumed_while_the_new_holder_works_the_chunk_is_fenced_out",
        ),
        "the intent script checks that a lease is live, not whose epoch it is",
    ),
    M(
        "result_without_cas",
        "postman_async/jobs/_lua.py",
        "if cur ~= ARGV[3] then return -1 end",
        "",
        (f"{JOBS}/test_journal_scripts.py",),
        "a result is written whatever intent is now recorded",
    ),
    M(
        "finish_ignores_lost_results",
        "postman_async/jobs/_lua.py",
        "if redis.call('HLEN', c .. ':res') < expected then return -2 end",
        "",
        (f"{JOBS}/test_journal_scripts.py",),
        "a chunk with fewer results than IDs is marked done",
    ),
    M(
        "create_over_remnants",
        "postman_async/jobs/_lua.py",
        "if redis.call('HEXISTS', p .. ':count', 'created_ms') == 1 then return -1 end",
        "",
        (f"{JOBS}/test_journal_scripts.py",),
        "a job whose meta was lost is created again over its remnants",
    ),
    M(
        "reconcile_failure_before_attempts",
        "postman_async/jobs/reconcile.py",
        "        if attempts > intent.attempts:\n",
        "        if attempts > intent.attempts and status != MessageStatus.FAILURE:\n",
        ("tests/unit/test_job_reconcile.py",),
        "reconcile checks `failure` before the attempt count (re-POSTs a retry that failed again)",
    ),
    M(
        "read_first_ignores_count",
        "postman_async/jobs/reconcile.py",
        "        if attempts > base:  # exact",
        "        if attempts > base + 1:  # exact",
        ("tests/unit/test_job_reconcile.py",),
        "a re-submitted job misses an attempt the lost job added",
    ),
    M(
        "read_first_skew_sign",
        "postman_async/jobs/reconcile.py",
        ">= since_ms - CLOCK_SKEW_MS",
        ">= since_ms + CLOCK_SKEW_MS",
        ("tests/unit/test_job_reconcile.py",),
        "the clock-skew allowance is applied the wrong way",
    ),
    M(
        "lost_job_looks_new",
        "postman_async/jobs/store.py",
        "        if chunks is None and not tomb and count_ms is None:",
        "        if chunks is None:",
        (
            f"{JOBS}/test_job_data_loss.py::test_lost_job_data_is_told_and_a_resubmission_posts_nothing_twice",
        ),
        "a job whose data Redis lost looks never created",
    ),
    M(
        "epochs_restart_after_loss",
        "postman_async/jobs/_lua.py",
        "if epoch <= now then  -- from Redis's clock: a lost job's incarnation never reuses"
        " an epoch",
        "if false then",
        (f"{JOBS}/test_journal_scripts.py",),
        "a job submitted again after Redis lost it hands out its lost incarnation's epochs",
    ),
    M(
        "late_loss_marks_new_job",
        "postman_async/jobs/_lua.py",
        "if m and m ~= ARGV[5] then return 0 end\n",
        "",
        (f"{JOBS}/test_journal_scripts.py",),
        "a worker's late report of a lost job marks the job submitted again under its ID",
    ),
    M(
        "late_slice_reports_latest_incarnation",
        "postman_async/jobs/taskiq_app.py",
        "            await self.lost(store, reason, incarnation)",
        "            await self.lost(store, reason)",
        (
            f"{JOBS}/test_job_data_loss.py::test_a_slice_of_the_lost_job_ending_late_does_not_mark_the_job_submitted_again",
        ),
        "a slice of the lost job ending late reports the loss of the job submitted again",
    ),
    M(
        "unknown_start_claims_retried",
        "postman_async/jobs/reconcile.py",
        "    elif since_ms <= 0:",
        "    elif False:",
        ("tests/unit/test_job_reconcile.py",),
        "a job submitted again with the lost job's start unknown reports every ID 'retried'",
    ),
    M(
        "lost_start_ignores_host_record",
        "postman_async/jobs/store.py",
        "return int(known_ms or (record.created_ms if record is not None else 0))",
        "return int(known_ms or 0)",
        (f"{JOBS}/test_journal_scripts.py",),
        "a lost job told without its start ignores this host's record of when it started",
    ),
    M(
        "expired_taken_for_lost",
        "postman_async/jobs/store.py",
        "            if record is None or await self.retired(record.marker):",
        "            if record is None:",
        (f"{JOBS}/test_journal_scripts.py",),
        "a job that ended and expired is taken for lost by a host that still records it",
    ),
    M(
        "expired_marked_lost_by_worker",
        "postman_async/jobs/taskiq_app.py",
        "            if now_marker is None and await store.retired(marker):",
        "            if False:",
        (
            f"{JOBS}/test_job_data_loss.py::test_a_worker_that_missed_the_finish_does_not_mark_the_expired_job_lost",
        ),
        "a worker that missed a job's finish marks it lost once its keys expire",
    ),
    M(
        "recreated_job_unflagged_by_check",
        "postman_async/jobs/taskiq_app.py",
        "                    await self._read_first_after(store, (marker, created_ms))",
        "                    pass",
        (
            f"{JOBS}/test_job_data_loss.py::test_a_job_created_again_over_an_unrecorded_loss_reads_first_from_the_old_start",
        ),
        "a job created again over an unrecorded loss is not made to read first by the check",
    ),
    M(
        "recreated_job_slice_posts_blind",
        "postman_async/jobs/taskiq_app.py",
        "            await self._read_first_after(store, previous)",
        "            pass",
        (
            f"{JOBS}/test_job_data_loss.py::test_a_job_created_again_over_an_unrecorded_loss_reads_first_from_the_old_start",
        ),
        "a slice of a job created again over an unrecorded loss POSTs without reading first",
    ),
    M(
        "ended_job_read_first",
        "postman_async/jobs/taskiq_app.py",
        "        if not await store.retired(old[0]):",
        "        if True:",
        (
            f"{JOBS}/test_job_data_loss.py::test_a_job_created_again_over_an_unrecorded_loss_reads_first_from_the_old_start",
        ),
        "a new job under the id of one that ended and expired is made to read first",
    ),
    M(
        "stuck_slice_holds_lease",
        "postman_async/jobs/runner.py",
        "            if clock() > until:",
        "            if False:",
        (f"{JOBS}/test_journal_scripts.py",),
        "a slice stuck in a call that never returns renews its lease forever",
    ),
    # -- trust boundaries --------------------------------------------------------------------
    M(
        "pin_ignored",
        "postman_async/jobs/config.py",
        '        if base_url is not None and base_url.rstrip("/") != campaign.base_url:',
        "        if False:",
        ("tests/jobs/test_job_trust.py",),
        "a job pinned to another base URL is run",
    ),
    M(
        "unknown_campaign_served",
        "postman_async/jobs/config.py",
        "        if campaign is None:\n            served",
        "        if campaign is None and not campaign_id:\n            served",
        ("tests/jobs/test_job_trust.py::test_worker_configuration_from_environment_and_file",),
        "a campaign the worker is not configured for is not refused",
    ),
    M(
        "cap_on_compressed_bytes",
        "postman_async/_body.py",
        "                if self.size > self.limit:",
        "                if self.received > self.limit:",
        ("tests/security/test_decompression_bomb.py",),
        "the response cap counts compressed bytes",
    ),
    M(
        "private_file_mode",
        "postman_async/_files.py",
        "PRIVATE_MODE = 0o600",
        "PRIVATE_MODE = 0o644",
        ("tests/unit/test_files.py", "tests/cli/test_cli_files.py"),
        "reports and sinks readable by everyone",
    ),
    M(
        "password_kept",
        "postman_async/_redact.py",
        '    return f"{user}:{MASK}" if colon else MASK',
        "    return userinfo",
        ("tests/unit/test_redact.py", "tests/security/test_cli_leaks.py"),
        "a URL's password is printed",
    ),
    M(
        "idn_allowed",
        "postman_async/validation.py",
        '    if not allow_idn and any(label.startswith("xn--") for label in host.lower()'
        '.split(".")):',
        "    if False:",
        ("tests/unit/test_validation.py",),
        "a look-alike (IDN) host is accepted",
    ),
    # -- sends read back (readback.py) --------------------------------------------------------
    M(
        "readback_skew_sign",
        "postman_async/readback.py",
        "    return date - timedelta(seconds=max(0.0, elapsed) + max(0.0, skew))",
        "    return date - timedelta(seconds=max(0.0, elapsed) - max(0.0, skew))",
        ("tests/unit/test_readback.py",),
        "the skew allowance narrows the search window instead of widening it",
    ),
    M(
        "readback_known_ids_ignored",
        "postman_async/readback.py",
        "        if message.id in seen or message.id in known or match is False:",
        "        if message.id in seen or match is False:",
        ("tests/unit/test_readback.py", "tests/safety/test_send_mutations.py"),
        "a message this client already knows is taken for the lost one",
    ),
    M(
        "readback_values_ignored",
        "postman_async/readback.py",
        "        same = None if message.values is None else dict(message.values) == "
        "dict(self.values)",
        "        same = True",
        ("tests/unit/test_readback.py",),
        "a message with other values is taken for the lost send",
    ),
    M(
        "readback_older_message",
        "postman_async/readback.py",
        "    return created_at >= not_before",
        "    return True",
        ("tests/unit/test_readback.py",),
        "a message created before the POST is taken for it",
    ),
    # -- the settle loop and the CLI's exit codes (the review's survivors) --------------------
    M(
        "settle_forgets_single_retries",
        "postman_async/_settle.py",
        "        self.stale.update(touched)\n        return touched",
        "        return touched",
        ("tests/integration/test_settle_planning.py", "tests/integration/test_orchestrator.py"),
        "settle does not mark singly retried IDs as unread since a POST",
    ),
    M(
        "retry_exit_zero_when_any",
        "postman_async/cli/_retry.py",
        "    if total and retried == total:\n        return 0",
        "    if retried:\n        return 0",
        ("tests/cli/test_exit_codes.py", "tests/cli/test_cli.py"),
        "retry exits 0 when any ID was retried",
    ),
    # -- the limiter (ratelimit.py, answer_clock.py, the session's reports) -------------------
    M(
        "pause_overwritten",
        "postman_async/ratelimit.py",
        "        self._blocked_until = max(self._blocked_until, self._clock() + max(0.0, delay))",
        "        self._blocked_until = self._clock() + max(0.0, delay)",
        ("tests/unit/test_ratelimit.py",),
        "a shorter 429 pause overwrites a longer one",
    ),
    M(
        "late_high_grant_sent",
        "postman_async/ratelimit.py",
        "            if now - slot <= max(self.slack, self.margin / 2, LATE_WAKE_TOLERANCE):",
        "            if True:",
        ("tests/unit/test_ratelimit.py",),
        "a late-woken HIGH grant is always sent (margin pacing)",
    ),
    M(
        "answers_ignored",
        "postman_async/answer_clock.py",
        "            released = max(start, now - self.credit)  # the answer, when no credit",
        "            released = ticket.granted_at",
        ("tests/unit/test_answer_clock.py",),
        "the answer clock counts a request released at its grant, not at its answer",
    ),
    M(
        "lost_answer_released_at_write",
        "postman_async/answer_clock.py",
        "            released = min(now, start + self.cap)",
        "            released = start",
        ("tests/unit/test_answer_clock.py",),
        "a lost answer counts as released at the write, not write + cap",
    ),
    M(
        "answer_clock_not_consulted",
        "postman_async/ratelimit.py",
        "                        self.answers.ready_at(),\n",
        "",
        ("tests/unit/test_answer_clock.py",),
        "the limiter grants on its spacing alone, never waiting for answers",
    ),
    M(
        "unsent_still_counts_removed",
        "postman_async/answer_clock.py",
        "        self._recent.remove(ticket)\n        ticket._counted = False",
        "        ticket.released_at = self.now()",
        ("tests/unit/test_answer_clock.py",),
        "a grant never written is counted as sent (the budget shrinks for nothing)",
    ),
    M(
        "session_never_reports_answers",
        "postman_async/_session.py",
        '                trace.tell("answered")\n',
        "",
        ("tests/integration/test_limiter_reports.py",),
        "the session does not tell the grant that an answer came",
    ),
    M(
        "write_not_reported",
        "postman_async/_post_hooks.py",
        "    trace.written = True\n",
        "",
        ("tests/integration/test_limiter_reports.py",),
        "the trace hook does not record the write (a timed-out POST counts as unsent)",
    ),
    M(
        "post_resent_after_ambiguity",
        "postman_async/_session.py",
        "    return certainly_dropped or (request.is_idempotent and transient(error))",
        "    return certainly_dropped or transient(error)",
        ("tests/unit/test_client_http.py",),
        "the session re-sends a POST after a timeout or a 5xx (a second SMS)",
    ),
    M(
        "meters_merged_by_value",
        "postman_async/policy.py",
        "@attrs.define(eq=False)  # meters are told apart by identity, not by their counts",
        "@attrs.define",
        ("tests/unit/test_client_http.py", "tests/integration/test_orchestrator.py"),
        "two meters with equal counts merge into one: a run's calls by purpose undercount",
    ),
    M(
        "redis_answers_ignored",
        "postman_async/_redis_grants.py",
        "        self._settle(max(start, now - self._clock.credit))",
        "        self._settle(self.due)",
        ("tests/distributed/test_redis_limiter.py",),
        "the Redis limiter counts a request released at its slot, not at its answer",
    ),
    M(
        "redis_lost_answer_at_once",
        "postman_async/_redis_grants.py",
        "        self._settle(min(now, start + self._clock.cap))",
        "        self._settle(start)",
        ("tests/distributed/test_redis_limiter.py",),
        "the Redis limiter releases a lost answer at its write, not write + cap",
    ),
    # -- uncertain outcomes (reports.py) ------------------------------------------------------
    M(
        "uncertain_fed_back",
        "postman_async/reports.py",
        "        return self.applied is None",
        "        return False",
        ("tests/unit/test_reports.py",),
        "an ID whose retry may have been applied is offered to feed back",
    ),
]
