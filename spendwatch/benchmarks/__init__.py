"""Benchmarks and load tests, kept out of the runtime modules.

=====================  ==========================================================================================
module                 what it measures (how to run it)
=====================  ==========================================================================================
``pipeline``           stream worker throughput and alert latency against a plain consumer (``spendwatch bench``)
``sizing``             events/s of one worker and its memory per 10k keys (``python -m spendwatch.benchmarks.sizing``)
``backtest``           ``spendwatch backtest`` events/s against a reference loop
                       (``python -m spendwatch.benchmarks.backtest``)
``score_series``       ``spendwatch score-series`` against a rolling z-score on labelled series
                       (``python -m spendwatch.benchmarks.score_series``)
``ingest_load``        the ingest service's sustained rate (``python -m spendwatch.benchmarks.ingest_load``)
``ingest_bombs``       ingest memory under concurrent gzip bombs (``python -m spendwatch.benchmarks.ingest_bombs``)
``parse``              parse throughput per gateway format against ``orjson.loads``
                       (``python -m spendwatch.benchmarks.parse``)
``clickhouse_sink``    the ClickHouse sink's insert rate (``python -m spendwatch.benchmarks.clickhouse_sink``)
=====================  ==========================================================================================
"""
