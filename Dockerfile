# The TodoMVC demo, built once; only its static files go into the image.
FROM node:20-slim AS demo
WORKDIR /demo
COPY examples/todomvc/package.json examples/todomvc/package-lock.json examples/todomvc/.npmrc ./
RUN npm ci --no-audit --no-fund
COPY examples/todomvc ./
RUN npm run build

# livesync: the package with its runtime dependencies only, the example project, run as an unprivileged user.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY syncapp syncapp
RUN pip install --no-cache-dir ".[all]" "dj-database-url>=3.1,<4"
COPY manage.py ./
COPY livesync_project livesync_project
COPY deploy/healthcheck.py deploy/healthcheck.py
COPY --from=demo /demo/dist examples/todomvc/dist
RUN useradd --system --no-create-home livesync
USER livesync
ENV PYTHONUNBUFFERED=1 DJANGO_DEBUG=false LIVESYNC_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["python", "deploy/healthcheck.py"]
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "livesync_project.asgi:application"]
