// PM2 ecosystem for the shop
module.exports = {
  apps: [
    {
      name: 'api',
      script: './dist/server.js',
      cwd: '/srv/api',
      instances: 'max',
      exec_mode: 'cluster',
      node_args: '--max-old-space-size=512',
      env: {
        NODE_ENV: 'production',
        LOG_LEVEL: "info",
      },
      env_staging: { NODE_ENV: 'staging' },
      max_memory_restart: '300M',
      kill_timeout: 5000,
      min_uptime: '10s',
      max_restarts: 10,
      exp_backoff_restart_delay: 100,
      watch: false,
    },
    {
      name: "mailer_worker",
      script: "worker.py",
      args: ["--queue", "mail \"urgent\""],
      cwd: "/srv/mailer",
      autorestart: false,
      restart_delay: 3000,
      out_file: "/var/log/mailer.out.log",
    },
  ],
};
