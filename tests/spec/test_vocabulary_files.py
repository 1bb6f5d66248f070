"""Flow files with AppFlow's task vocabulary: each new task loads, and each mistake in one is
reported naming the file, the task and the field, with the fix."""

from pathlib import Path

import pytest

from flow_assets.spec import load_connections, load_flow_file
from flow_assets.spec.models import task_kind
from tests.spec.test_flow_files import CONNECTIONS, problems_of, write

HEAD = """\
source:
  connection: sf
  object: Contact
  fields: [Id, FirstName, LastName, Amount, Qty, Birthdate, Email, Ssn]
tasks:
"""

VOCABULARY = """\
  - map_all: {exclude: [Ssn]}
  - cast: {field: Qty, type: integer}
  - arithmetic: {field: Total, operator: multiply, operands: [Qty, Amount]}
  - arithmetic: {field: Half, operator: divide, operands: [Total, 2]}
  - merge: {field: FullName, format: "{FirstName} {LastName}"}
  - truncate: {field: FullName, length: 40}
  - format: {field: Birthdate, as: date, formats: ["%m/%d/%Y", "%d.%m.%Y"]}
  - mask: {field: Email, how: hmac, key: "${EMAIL_KEY}"}
  - filter: {field: Half, operator: in, value: [1, 2.5]}
  - validate: {field: FullName, check: non_null}
"""


def load(tmp_path: Path, tasks: str):
    (tmp_path / "connections.yaml").write_text(CONNECTIONS)
    path = write(tmp_path, "contacts.yaml", HEAD + tasks)
    return load_flow_file(path, load_connections(tmp_path / "connections.yaml"))


def test_every_new_task_loads_and_later_tasks_see_the_fields_it_makes(tmp_path):
    flow = load(tmp_path, VOCABULARY)
    assert [task_kind(t) for t in flow.tasks] == [
        "map_all", "cast", "arithmetic", "arithmetic", "merge", "truncate", "format", "mask",
        "filter", "validate",
    ]  # fmt: skip
    map_all, cast, product, half, merge, truncate, date, mask = flow.task_specs[:8]
    assert map_all.exclude == ["Ssn"]
    assert (cast.field, cast.type) == ("Qty", "integer")
    assert (product.operator, product.operands) == ("multiply", ["Qty", "Amount"])
    assert half.operands == ["Total", 2]
    assert merge.fields == ["FirstName", "LastName"]
    assert (truncate.field, truncate.length) == ("FullName", 40)
    assert date.formats == ["%m/%d/%Y", "%d.%m.%Y"]
    assert (mask.how, mask.key, mask.secret) == ("hmac", "${EMAIL_KEY}", ("key", "${EMAIL_KEY}"))


def test_bare_map_all_loads(tmp_path):
    flow = load(tmp_path, "  - map_all:\n  - map_all: {}\n")
    assert [t.map_all.exclude for t in flow.tasks] == [[], []]


@pytest.mark.parametrize(
    ("typo", "kind"),
    [("map_al", "map_all"), ("arithmatic", "arithmetic"), ("merg", "merge"),
     ("truncat", "truncate"), ("cats", "cast")],
)  # fmt: skip
def test_unknown_task_suggests_the_new_ones(tmp_path, typo, kind):
    text = HEAD + VOCABULARY.replace(f"  - {kind}:", f"  - {typo}:", 1)
    message = problems_of(tmp_path, text)
    assert f": unknown task '{typo}' (did you mean '{kind}'?)" in message
    assert "map_all, filter, compute, arithmetic, merge, truncate, cast" in message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # unknown keys and values get a did-you-mean
        ("{exclude: [Ssn]}", "{exclude: [Ssn], excluded: [Id]}",
         "tasks[0].map_all: unknown key 'excluded' (did you mean 'exclude'?); allowed here: "
         "exclude"),
        ("operator: multiply, operands", "operator: multiply, operand",
         "tasks[2].arithmetic: unknown key 'operand' (did you mean 'operands'?)"),
        ("operator: divide", "operator: divid",
         "tasks[3].arithmetic.operator: 'divid' is not one of: add, subtract, multiply, divide "
         "(did you mean 'divide'?)"),
        ("{field: FullName, length: 40}", "{field: FullName, lenght: 40}",
         "tasks[5].truncate: unknown key 'lenght' (did you mean 'length'?)"),
        ("type: integer", "type: int",
         "tasks[1].cast.type: 'int' is not one of: string, integer, float, boolean, date, "
         "datetime"),
        ("format: \"{FirstName}", "fromat: \"{FirstName}",
         "tasks[4].merge: unknown key 'fromat' (did you mean 'format'?)"),
        # fields that do not exist at that step
        ("exclude: [Ssn]", "exclude: [SSN]",
         "tasks[0].map_all.exclude[0]: 'SSN' is not a field at this step (did you mean 'Ssn'?)"),
        ("operands: [Qty, Amount]", "operands: [Qty, Amont]",
         "tasks[2].arithmetic.operands: 'Amont' is not a field at this step "
         "(did you mean 'Amount'?)"),
        ("{LastName}", "{Lastname}",
         "tasks[4].merge.format: 'Lastname' is not a field at this step "
         "(did you mean 'LastName'?)"),
        ("{field: FullName, length", "{field: Fullname, length",
         "tasks[5].truncate.field: 'Fullname' is not a field at this step"),
        ("{field: Qty, type", "{field: qty, type",
         "tasks[1].cast.field: 'qty' is not a field at this step (did you mean 'Qty'?)"),
        # the values themselves
        ("operands: [Total, 2]", "operands: [Total]",
         "tasks[3].arithmetic.operands: List should have at least 2 items"),
        ("operands: [Total, 2]", "operands: [Total, true]",
         "tasks[3].arithmetic.operands: an operand is a field name or a number, not true or "
         "false"),
        ("length: 40", "length: 0", "tasks[5].truncate.length: Input should be greater than 0"),
        ("\"{FirstName} {LastName}\"", "\"{FirstName {LastName}\"",
         "tasks[4].merge.format: unexpected '{' in field name; write '{{' or '}}' for a "
         "literal brace"),
        ("operands: [Total, 2]", "operands: [1, 2]",
         "tasks[3].arithmetic: at least one operand is a field; for a constant use compute"),
        ("formats: [\"%m/%d/%Y\", \"%d.%m.%Y\"]", "into: Born",
         "tasks[6].format: format 'date' needs formats"),
        ("how: hmac, key: \"${EMAIL_KEY}\"", "how: hmac",
         "tasks[7].mask: mask 'hmac' needs key: ${ENV_VAR}"),
        ("key: \"${EMAIL_KEY}\"", "key: \"${EMAIL_KEY:-fallback}\"",
         "tasks[7].mask: key is a secret: write it as ${ENV_VAR}, never as a literal"),
    ],
)  # fmt: skip
def test_mistakes_in_new_tasks_name_file_task_and_field(tmp_path, old, new, expected):
    assert VOCABULARY.count(old) == 1, old
    message = problems_of(tmp_path, HEAD + VOCABULARY.replace(old, new))
    assert f"bad_flow.yaml: {expected}" in message


def test_literal_hmac_key_is_refused_without_echoing_it(tmp_path):
    text = HEAD + VOCABULARY.replace('key: "${EMAIL_KEY}"', "key: hunter2")
    message = problems_of(tmp_path, text)
    assert "bad_flow.yaml: tasks[7].mask: key is a secret" in message
    assert "hunter2" not in message


def test_excluded_field_is_gone_for_later_tasks(tmp_path):
    text = HEAD + "  - map_all: {exclude: [Ssn]}\n  - mask: {field: Ssn, how: all}\n"
    message = problems_of(tmp_path, text)
    assert "tasks[1].mask.field: 'Ssn' is not a field at this step" in message
