"""``make bench``: SIPp load against a real Asterisk, with and without a FastAGI step.

One throw-away hotline (Asterisk from the root, Redis, controller; see
:mod:`tests.integration.harness`) gets two bench-only numbers appended to its
release's ``extensions.conf`` before Asterisk starts (:mod:`bench.dialplan`):
a bare Answer-Wait-Hangup and the same call with ``AGI(agi://.../bench-welcome)``
in the middle, served by a FastAGI server running in the bench process
(:mod:`bench.welcome`).  :mod:`bench.agi_bench` searches the highest sustained
call rate of each (:mod:`bench.load` drives SIPp from the carrier's address)
and measures the AGI latency at 80 % of the AGI variant's maximum.

Everything stays on loopback; every SIPp run is bounded in calls (``-m``),
concurrency (``-l``) and time (``-timeout``); the whole search has a time
budget.

:mod:`bench.agi_micro` (``python -m bench.agi_micro``) measures the FastAGI
server alone against a fake Asterisk: its CPU per call and latency, in
seconds rather than minutes, for tuning :mod:`ivr.server`.
"""
