"""Alerting: rules over the metrics flowing through Vigil, and the notifiers that tell people.

    rules.py       what a rule says (config)        store.py     the series rules read
    engine.py      rule evaluation, alert states    dispatch.py  routes, groups, repeats
    silences.py    silences                         state.py     files that survive a restart
    notifiers/     log, webhook, slack, pagerduty, email, and delivery with retries
    processor.py   the `alerts` processor           admin.py     its admin API routes
    cli.py         `vigil alerts`
"""
