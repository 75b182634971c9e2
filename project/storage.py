"""Where a study lives, for the search and for the lab's shared studies: a storage URL checked
before any folder is made, the study opened with heartbeats, a sampler that no two workers share,
and a lost database said in one line.

    sqlite:///logs/search/<name>/study.db                 (the search's default: one machine)
    postgresql://user:password@host:5432/optuna           (psycopg 3: pip install -e '.[postgres]')
    mysql+pymysql://user:password@host:3306/optuna        (PyMySQL: pip install -e '.[mysql]')

Optuna and SQLAlchemy do the work; this module is what they leave to us: which driver a URL needs
and how to install it, the password kept off the terminal, which failures are a bad setting
(exit 2) and which an outage (exit 1), and trials whose worker died marked FAIL and retried.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import optuna

from project.errors import SettingError

# Heartbeats and their retry callback are "experimental" in optuna 5 and say so at every use; they
# are the documented way to end zombie trials, chosen on purpose.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

# The extra of pyproject.toml that installs a driver module (make install EXTRAS=postgres).
EXTRAS = {"psycopg": "postgres", "psycopg2": None, "pymysql": "mysql", "MySQLdb": None}
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
CONNECT_SECONDS = 10  # an unreachable server is said within this, not after the driver's minutes
# The driver's words for a setting the user must change (exit 2); anything else is an outage (exit 1).
BAD_SETTING = ("password authentication failed", "does not exist", "could not translate host name",
               "name or service not known", "access denied", "unknown database", "no such host",
               "unable to open database file", "file is not a database", "no password supplied")


class StorageError(SettingError):
    """A storage that cannot be used; ``code`` 2 for a setting to change, 1 for a server that is down."""

    def __init__(self, url: str, why: str, allowed: str, code: int = 2):
        super().__init__("--storage", url, allowed, why)
        self.code = code


def masked(url: str) -> str:
    """The URL as it may be printed or written: its password replaced by ***."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def _parse(url: str):
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as err:
        raise StorageError(masked(url), f"is not a storage URL SQLAlchemy knows ({' '.join(str(err).split())})",
                           "sqlite:///path.db, postgresql://user:password@host:port/database, "
                           "mysql+pymysql://user:password@host:port/database") from None
    return parsed, dialect


def _check_driver(url: str, parsed, dialect) -> None:
    try:
        dialect.import_dbapi()
    except ImportError as err:
        module = getattr(err, "name", None) or str(err).split("'")[-2 if "'" in str(err) else -1]
        extra = EXTRAS.get(module.split(".")[0])
        install = f"pip install -e '.[{extra}]' (make install brings it too)" if extra else f"pip install {module}"
        raise StorageError(masked(url), f"needs the {module} driver for {parsed.drivername}://, which is not installed",
                           install) from None


def _check_sqlite_file(url: str, parsed) -> None:
    database = parsed.database
    if not database or database == ":memory:":
        raise StorageError(masked(url), "keeps the study in memory only: other workers and a rerun cannot see it",
                           "sqlite:///path/to/study.db")
    path = Path(database)
    if path.is_dir():
        raise StorageError(url, f"names a folder ({path}), not a database file", "sqlite:///path/to/study.db")
    if not path.parent.is_dir():
        raise StorageError(url, f"lies in a folder that does not exist ({path.parent})",
                           "a database file in an existing folder")
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as f:
            if f.read(16) != b"SQLite format 3\0":
                raise StorageError(url, f"names {path}, which is not an SQLite database", "an SQLite file made by "
                                   "a search, or a new file name")


def connect_args(parsed) -> dict:
    """The driver's own time limit for connecting, so an unreachable server is said at once."""
    driver = parsed.get_dialect().driver
    if parsed.get_backend_name() == "sqlite":
        return {"timeout": 60}  # wait for another worker's lock instead of failing
    return {"connect_timeout": CONNECT_SECONDS} if driver in ("psycopg", "psycopg2", "pymysql", "mysqldb") else {}


def where(parsed) -> str:
    """The server (host:port) or SQLite file a URL names."""
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.database)
    return f"{parsed.host or 'localhost'}:{parsed.port or DEFAULT_PORTS.get(backend, '?')}"


def unreachable(url: str, err: BaseException) -> StorageError:
    """A database error as one line: the server, the database's own reason, and whether it is a
    setting (exit 2) or an outage (exit 1)."""
    parsed, _ = _parse(url)
    reason = " ".join(str(getattr(err, "orig", None) or err).split())
    bad = any(words in reason.lower() for words in BAD_SETTING)
    if bad:
        return StorageError(masked(url), f"is refused by {where(parsed)}: {reason}",
                            "a database, user and password that server accepts")
    return StorageError(masked(url), f"cannot be reached at {where(parsed)}: {reason}", "a running database server "
                        "(the finished trials are kept: rerun the same command once it is back)", code=1)


def check_storage(url: str) -> None:
    """The URL parsed, its driver present and the database answering, before any folder is made."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    parsed, dialect = _parse(url)
    _check_driver(url, parsed, dialect)
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_file(url, parsed)
        if not Path(parsed.database).exists():
            return  # made by the study
    engine = create_engine(parsed, connect_args=connect_args(parsed))
    try:
        with engine.connect() as connection:
            connection.execute(text("select 1"))
    except (DBAPIError, sqlite3.Error, OSError) as err:
        raise unreachable(url, err) from None
    finally:
        engine.dispose()


def database_error(err: BaseException | None) -> BaseException | None:
    """The database error behind an exception (optuna wraps it, or fails in its own clean-up after it)."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, (OperationalError, DBAPIError, sqlite3.OperationalError)):
            return err
        err = err.__cause__ or err.__context__
    return None


class TrialSeededTPE(optuna.samplers.TPESampler):
    """Optuna's TPE whose random stream is drawn afresh for each trial from the study's seed and the
    trial's number (unique in a study, whichever worker asks). Workers sharing a study therefore
    propose different parameters, a resumed study continues the sequence instead of replaying it, and
    one worker alone is reproducible. ``constant_liar`` makes each worker count the others' running
    trials as bad results, so they do not all explore the same region."""

    def __init__(self, seed: int, **kwargs):
        super().__init__(seed=seed, constant_liar=True, **kwargs)
        self.study_seed = seed

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        seed = int(np.random.SeedSequence([self.study_seed, trial.number]).generate_state(1)[0])
        self._rng.rng.seed(seed)
        self._random_sampler._rng.rng.seed(seed)
        super().before_trial(study, trial)


def open_study(name: str, url: str, direction: str, sampler, pruner, heartbeat: int | None,
               attempts: int = 6, retries: int = 1) -> optuna.Study:
    """Create or load the study. With ``heartbeat`` (seconds) every running trial records that its
    worker is alive; a trial silent for twice that is marked FAIL by the next worker that starts a
    trial, and retried (``retries`` times at most). Processes starting at once on a new database
    race to create its tables; the loser retries."""
    import sqlalchemy.exc

    parsed, _ = _parse(url)
    settings = {}
    if heartbeat:
        settings = {"heartbeat_interval": heartbeat, "grace_period": 2 * heartbeat,
                    "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=retries)}
    for attempt in range(attempts):
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": connect_args(parsed)}, **settings)
            return optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction=direction,
                                       sampler=sampler, pruner=pruner)
        # two workers creating the tables at once: a duplicate key (IntegrityError) or table (ProgrammingError)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, optuna.exceptions.DuplicatedStudyError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + random.random())
        except (sqlalchemy.exc.OperationalError, sqlite3.OperationalError) as err:
            # SQLite: another worker's lock, or the tables it created between our look and our create
            if attempt == attempts - 1 or not any(words in str(err) for words in ("locked", "already exists")):
                raise unreachable(url, err) from None
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")


class HeartbeatWatch:
    """Keeps a failed heartbeat (the database went away) off the terminal: optuna's heartbeat thread
    would print a traceback; the search reports the loss itself, at the trial's next report."""

    def __init__(self):
        self.error: BaseException | None = None
        self._previous = threading.excepthook

    def __enter__(self):
        def hook(args):
            if database_error(args.exc_value) is not None:
                self.error = args.exc_value
            else:
                self._previous(args)
        threading.excepthook = hook
        return self

    def __exit__(self, *exc):
        threading.excepthook = self._previous
