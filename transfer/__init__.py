"""Transfers between the hotline and the lines around it (issue 5).

Emergency warm transfers (三方通話) to 110/119/120/122, from an agent's call or the
IVR's emergency offer, and hand-offs to departments and city centres (warm, blind,
consultation), as one explicit state machine persisted outside the process:

* :mod:`hotline.channel_vars` (shared) - contexts, profiles, variables shared with the dialplan;
* :mod:`transfer.machine` - the states, allowed transitions and rules (pure);
* :mod:`transfer.destinations` - emergency lines, departments and city centres (pure);
* :mod:`transfer.origin` - where a call came from (legacy, relay, 110...), into Redis;
* :mod:`transfer.store` - SQLite persistence of transfers and their transitions;
* :mod:`transfer.services` - the service driving Asterisk over AMI (no HTTP);
* :mod:`transfer.http` - thin HTTP resources;
* :mod:`transfer.plugin` - wiring into the controller.
"""
