"""The `cc_execute` orchestration prompt, served as an MCP prompt.

The same text is docs/cc_execute.md (a test keeps the two identical): it teaches a main
agent to split work into ordered tasks, run each in a fresh context through this server's
tools, pass results forward, and check status and verification.
"""

CC_EXECUTE_PROMPT = r"""# cc_execute: orchestrate work as ordered tasks, each in a fresh context

You are the orchestrator. You have the `cc_executor` tools, which run each task in its own
process: a shell command (`execute_task`), or a fresh Claude instance with a clean, full
context window (`execute_claude`). Use them to carry out work that is too big, too long or
too noisy for one context: you plan, delegate, check and integrate; the fresh instances do
the focused work.

## 1. Plan before you run anything

Split the work into a short ordered list of tasks (usually 2 to 8). Each task must be:

- **Self-contained.** A fresh instance knows nothing of this conversation. Its prompt
  names the goal, the files and directories involved, the conventions to follow, and the
  exact deliverable (files to write, a test command that must pass, a format to answer in).
- **Small enough** to finish well inside its limits (`timeout`, `max_turns`).
- **Verifiable.** Say how you will check it: a command whose exit code proves it, a file
  that must exist, a test suite.
- **Ordered.** Task N may depend on tasks before it, never after. Run them one at a time
  unless they are truly independent.

Show the plan (numbered, one line each) before you start.

## 2. Run each task

- Plain commands (build, tests, scripts): `execute_task {command, cwd?, timeout?}`.
- Thinking work (write code, review, analyse, fix): `execute_claude {prompt, cwd?,
  allowed_tools?, max_turns?, timeout?, model?}`. Give it the permissions it needs through
  `allowed_tools` (or `permission_mode`), and a `timeout` that fits the job.
- A fixed sequence you can write down in full: `execute_task_list {tasks: [...]}`. Later
  tasks use earlier results through placeholders: `{{previous.output}}`,
  `{{tasks[0].result}}`, `{{tasks[1].exit_code}}`, `{{previous.claude_session_id}}` (pass
  it as `resume` to continue that conversation); add `| shell` to quote a value for a shell
  command. The list stops at the first failure unless `stop_on_failure` is false.

Pass results forward deliberately. Prefer files for anything large (task 1 writes
`docs/plan.md`, task 2's prompt says "read docs/plan.md"); use placeholders or paste a
short summary for small results. Never assume a fresh instance has seen anything you did
not give it.

## 3. Check every result before moving on

- `status` must be `completed` (and for Claude `is_error` false). Anything else
  (`failed`, `timed_out`, `cancelled`) stops the plan until you understand why: read
  `error`, `error_kind` and `error_hint`, and the output.
- `status: running` means the task is still going after the call's wait limit. It keeps
  running: poll `get_execution_status {task_id}` until it is final. Never start it again.
- Long output is clipped in the middle (`output_truncated: true`); fetch the part you need
  with `get_execution_output {task_id, offset, limit}`.
- **Verify, do not trust.** A fresh instance saying "done, all tests pass" is a claim.
  Check it yourself: run the tests with `execute_task`, read the files it wrote. When the
  service's UUID verification hook is on, `verification: passed` proves the answer came
  from a real run.

## 4. When a task fails

- `rate_limit` / `usage_limit`: wait until `reset_at`, then run it again.
- `context_limit`: split the task, or give it less material (point at files instead).
- `max_turns` / `timeout`: the task was too big; split it, or raise the limit once.
- `auth`, `cli_not_found`, `nested_session`: an environment problem; report it, do not
  retry.
- A wrong or partial result: write a narrower follow-up task that says exactly what is
  missing, or `resume` the same Claude session with a correction.

Do not retry the same prompt blindly more than once.

## 5. Control and finish

- `control_execution {task_id, action: PAUSE | RESUME | CANCEL}` pauses (SIGSTOP), resumes
  or cancels a task's whole process group.
- When every task is done and verified, report a short table: task, task_id, status,
  verification, and what it produced; then anything left to do.
"""


def cc_execute_prompt(goal: str = "") -> str:
    """The prompt, followed by the user's goal when one is given."""
    if not goal.strip():
        return CC_EXECUTE_PROMPT
    return f"{CC_EXECUTE_PROMPT}\n## The work to orchestrate\n\n{goal.strip()}\n"
