"""``voxgate-manager create-admin`` / ``create-user``: accounts made on the command line, with a
password typed twice (or read from stdin), never a default one."""

from __future__ import annotations

import argparse
import getpass
import sys

from voxgate_manager.accounts.service import Accounts, AuthError
from voxgate_manager.accounts.sqlite import Database
from voxgate_manager.settings import ManagerSettings

COMMANDS = ("create-admin", "create-user")


def main(argv: list[str]) -> int:
    command, rest = argv[0], argv[1:]
    s = ManagerSettings()
    p = argparse.ArgumentParser(prog=f"voxgate-manager {command}",
                                description="Create an account in the manager's database (works while the manager runs).")
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.add_argument("--data-dir", default=s.app_folder(), help="the accounts' folder (env VOXGATE_MANAGER_APP_DIR, else VOXGATE_MANAGER_DATA_DIR; default %(default)s)")
    p.add_argument("--db", default=s.app_db, help="the database file (env VOXGATE_MANAGER_APP_DB; default <data-dir>/app.sqlite3)")
    if command == "create-user":
        p.add_argument("--role", choices=("user", "admin"), default="user")
    args = p.parse_args(rest)
    role = "admin" if command == "create-admin" else args.role
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {args.username}: ")
        if getpass.getpass("Again: ") != password:
            print(f"voxgate-manager {command}: the passwords differ; nothing created", file=sys.stderr)
            return 1
    s.app_dir, s.app_db = args.data_dir, args.db
    db = Database(s.app_db_path())
    try:
        user = Accounts(db).create_user(args.username, password, role)
    except AuthError as exc:
        print(f"voxgate-manager {command}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(f"created {user.role} '{user.username}' (id {user.id}) in {s.app_db_path()}")
    return 0
