# The hub's image: one image, run as worker or API (`tongdao up --role worker|api`).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY canonical canonical
COPY connectors connectors
COPY mappings mappings
COPY workflows workflows
COPY worker worker
COPY store store
COPY simulators simulators
COPY hub hub
COPY flows flows
RUN pip install --no-cache-dir '.[postgres]'
ENV TONGDAO_LOG_FORMAT=json TONGDAO_HOME=/data
EXPOSE 8700
CMD ["tongdao", "up", "--role", "all"]
