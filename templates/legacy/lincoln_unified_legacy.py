# Lincoln Unified: hand-written DAG kept from before dagfleet, published verbatim
# (after dagfleet checks that it imports). Its customer row has legacy_dag_file set.
import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG, CronTriggerTimetable
except ImportError:  # Airflow 2.11
    from airflow.models.dag import DAG
    from airflow.timetables.trigger import CronTriggerTimetable
from airflow.providers.google.cloud.operators.bigquery import BigQueryInsertJobOperator

with DAG(
    dag_id="lincoln-unified__legacy",
    description="Lincoln Unified: legacy SIS extract (hand-written)",
    schedule=CronTriggerTimetable("30 4 * * *", timezone="America/Los_Angeles"),
    start_date=pendulum.datetime(2023, 8, 1, tz="America/Los_Angeles"),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    tags=["customer:lincoln-unified", "variant:legacy"],
    default_args={"owner": "data-platform", "retries": 2, "retry_delay": 600},
):
    BigQueryInsertJobOperator(
        task_id="legacy_sis_extract",
        project_id="edu-data-platform",
        location="US",
        configuration={
            "query": {
                "query": "CALL `edu-data-platform.district_lincoln_unified.legacy_sis_extract`(DATE '{{ (logical_date if logical_date is defined else dag_run.run_after) | ds }}')",
                "useLegacySql": False,
            }
        },
    )
