"""The offline tools, `vigil profile build|show` and `vigil analyze`: the live `ml` processor's
statistics applied to data files, so a training file and a day of logged predictions give the
numbers the agent would give.

- `cli`: the commands' parser, built at every `vigil` start (standard library only);
- `commands`: what each command does, imported when one runs;
- `reference`: which column is what (`Roles`), a profile built from a table, and the view of a
  profile that analysis takes (keyed by the current data's column names);
- `files`: the user's files read: data, profiles, labels joined by id;
- `analysis`: a chunk's drift, data health and performance, as the JSON contract has them;
- `report`: the reports rendered, as JSON and as tables for people;
- `errors`: the one-line error of a bad input and the wording its messages share.
"""
