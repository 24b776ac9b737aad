FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY manage.py ./
COPY livesync_project livesync_project
COPY syncapp syncapp
ENV PYTHONUNBUFFERED=1 DJANGO_DEBUG=false
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "livesync_project.asgi:application"]
